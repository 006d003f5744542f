//! Named leases in the database: work that replicas share (a scheduled training) is done by
//! the one replica holding its lease. A lease is taken by one statement (an upsert that only
//! succeeds when the lease is free, lapsed or already this holder's), so two replicas never
//! hold one at once; a holder that dies lets it lapse after the time it took it for. Each
//! lease keeps a small state beside it (what the last run did), read by whoever takes it next.

use std::time::Duration;

use crate::{Database, StoreError};

const MIGRATIONS: &[&str] = &["CREATE TABLE store_leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        until_ms INTEGER NOT NULL,
        state TEXT NOT NULL DEFAULT ''
    )"];

/// One process's (or one task's) hand on the database's leases.
#[derive(Debug, Clone)]
pub struct Leases {
    db: Database,
    holder: String,
}

fn now_ms() -> i64 {
    (hearth_types::clock::unix_now_f64() * 1000.0) as i64
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

impl Leases {
    /// Opens (migrating) the lease table, under a holder name unique to this handle.
    pub fn open(db: &Database) -> Result<Leases, StoreError> {
        db.migrate("store.leases", MIGRATIONS)?;
        Ok(Leases {
            db: db.clone(),
            holder: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
        })
    }

    /// Takes lease `name` for `length` when no other holder has it (or theirs lapsed):
    /// answers its state (what the last holder left, "" at first), or None when another
    /// holder has it. Taking one this handle already holds extends it.
    pub fn try_take(&self, name: &str, length: Duration) -> Result<Option<String>, StoreError> {
        let now = now_ms();
        // A statement that writes: on the writer (SQLite's readers are read-only).
        let taken = self.db.write(|tx| {
            tx.query_one(
                "INSERT INTO store_leases (name, holder, until_ms) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms
             WHERE store_leases.until_ms <= $4 OR store_leases.holder = excluded.holder
             RETURNING state",
                crate::params![
                    name,
                    self.holder.as_str(),
                    now.saturating_add(millis(length)),
                    now
                ],
                |r| r.get::<String>(0),
            )
        })?;
        Ok(taken)
    }

    /// Extends lease `name` for `length` from now, if this handle still holds it; false when
    /// it lapsed and another holder took it.
    pub fn renew(&self, name: &str, length: Duration) -> Result<bool, StoreError> {
        let changed = self.db.execute(
            "UPDATE store_leases SET until_ms = $3 WHERE name = $1 AND holder = $2",
            crate::params![
                name,
                self.holder.as_str(),
                now_ms().saturating_add(millis(length))
            ],
        )?;
        Ok(changed == 1)
    }

    /// Leaves `state` on lease `name` for its next holder without holding it (work done
    /// outside the lease, e.g. a training run by hand, that the holder need not repeat). A
    /// holder releasing it later with a state of its own overwrites this one.
    pub fn record_state(&self, name: &str, state: &str) -> Result<(), StoreError> {
        self.db.execute(
            "INSERT INTO store_leases (name, holder, until_ms, state) VALUES ($1, '', 0, $2)
             ON CONFLICT (name) DO UPDATE SET state = excluded.state",
            crate::params![name, state],
        )?;
        Ok(())
    }

    /// Lets lease `name` go (if this handle holds it), leaving `state` for the next holder
    /// (None keeps the state as it was). False when it was not this handle's any more.
    pub fn release(&self, name: &str, state: Option<&str>) -> Result<bool, StoreError> {
        let changed = match state {
            Some(state) => self.db.execute(
                "UPDATE store_leases SET until_ms = 0, state = $3 WHERE name = $1 AND holder = $2",
                crate::params![name, self.holder.as_str(), state],
            )?,
            None => self.db.execute(
                "UPDATE store_leases SET until_ms = 0 WHERE name = $1 AND holder = $2",
                crate::params![name, self.holder.as_str()],
            )?,
        };
        Ok(changed == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both backends: SQLite in `dir`, and a fresh PostgreSQL database.
    fn databases(dir: &std::path::Path) -> Vec<Database> {
        vec![
            Database::open(&dir.join("hearth.db")).unwrap(),
            Database::connect(&hearth_testdata::postgres_database()).unwrap(),
        ]
    }

    #[test]
    fn one_holder_at_a_time_and_a_lapsed_lease_passes_on() {
        let dir = tempfile::tempdir().unwrap();
        for db in databases(dir.path()) {
            let (a, b) = (Leases::open(&db).unwrap(), Leases::open(&db).unwrap());
            let long = Duration::from_secs(60);
            assert_eq!(a.try_take("job", long).unwrap().as_deref(), Some(""));
            assert_eq!(b.try_take("job", long).unwrap(), None, "{db:?}");
            // The holder may take it again (extending it); another name is free.
            assert!(a.try_take("job", long).unwrap().is_some());
            assert!(b.try_take("other", long).unwrap().is_some());
            assert!(!b.renew("job", long).unwrap());
            assert!(!b.release("job", Some("b's")).unwrap());
            // Released with a state: the next holder reads it.
            assert!(a.release("job", Some("trained on 7")).unwrap());
            assert_eq!(
                b.try_take("job", long).unwrap().as_deref(),
                Some("trained on 7")
            );
            assert_eq!(a.try_take("job", long).unwrap(), None);
            // A holder that stops renewing loses it once it lapses.
            assert!(b.renew("job", Duration::from_millis(50)).unwrap());
            std::thread::sleep(Duration::from_millis(120));
            assert!(a.try_take("job", long).unwrap().is_some());
            assert!(!b.renew("job", long).unwrap());
            // Releasing without a state keeps the last one.
            assert!(a.release("job", None).unwrap());
            assert_eq!(
                b.try_take("job", long).unwrap().as_deref(),
                Some("trained on 7")
            );
        }
    }

    #[test]
    fn many_takers_at_once_get_one_lease() {
        let dir = tempfile::tempdir().unwrap();
        for db in databases(dir.path()) {
            let takers: Vec<Leases> = (0..8).map(|_| Leases::open(&db).unwrap()).collect();
            let barrier = std::sync::Barrier::new(takers.len());
            let won = std::thread::scope(|s| {
                let handles: Vec<_> = takers
                    .iter()
                    .map(|l| {
                        let barrier = &barrier;
                        s.spawn(move || {
                            barrier.wait();
                            l.try_take("once", Duration::from_secs(60))
                                .unwrap()
                                .is_some()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap())
                    .filter(|won| *won)
                    .count()
            });
            assert_eq!(won, 1, "{db:?}");
        }
    }
}
