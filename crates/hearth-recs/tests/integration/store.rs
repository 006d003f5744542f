//! Items, users and events in the embedded database.

use hearth_recs::import::ColumnMapping;
use hearth_recs::store::{import_file, ImportOptions, RecsStore};
use hearth_recs::{Event, EventWeights, Item, ItemId, User, UserId};
use hearth_store::{Store, StoreOptions};

/// The recommendation tables of the store at `dir` (SQLite) or `url` (PostgreSQL).
fn open_store(dir: &std::path::Path, url: Option<&str>) -> RecsStore {
    let options = StoreOptions {
        url: url.map(str::to_owned),
        artifacts_dir: None,
    };
    RecsStore::open(Store::open_with(dir, &options).unwrap().db().clone()).unwrap()
}

/// A second, separate store on the same backend as `url`.
fn another(url: Option<&str>) -> Option<String> {
    url.map(|_| hearth_testdata::postgres_database())
}

#[test]
fn imports_are_idempotent_and_strict_imports_store_nothing_from_a_bad_file() {
    for url in hearth_testdata::store_urls() {
        imports_are_idempotent_on(url.as_deref());
    }
}

fn imports_are_idempotent_on(url: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.csv");
    std::fs::write(
        &events,
        "event_id,user_id,item_id,type,timestamp\ne1,u1,i1,view,10\ne2,u1,i2,purchase,20\ne3,u2,i1,bogus-time-row,x\ne4,u2,i2,cart,30\n",
    )
    .unwrap();
    let items = dir.path().join("items.jsonl");
    std::fs::write(
        &items,
        "{\"id\":\"i1\",\"title\":\"Kettle\",\"price\":20}\n{\"id\":\"i2\",\"title\":\"Mug\",\"categories\":[\"kitchen\"]}\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let store = open_store(&data, url);
    let mapping = ColumnMapping::default();
    let mut bad = Vec::new();
    let options = ImportOptions {
        strict: false,
        batch_size: 2,
    };
    let summary = import_file::<Event>(&store, &events, &mapping, &options, &mut |p| {
        if let hearth_recs::store::ImportProgress::BadRow(e) = p {
            bad.push(e.line)
        }
    })
    .unwrap();
    assert_eq!(
        (summary.stored, summary.duplicates, summary.skipped),
        (3, 0, 1)
    );
    assert_eq!(bad, [4]);
    // The same file again: every event is already there.
    let again = import_file::<Event>(&store, &events, &mapping, &options, &mut |_| {}).unwrap();
    assert_eq!((again.stored, again.duplicates), (0, 3));
    assert_eq!(store.counts().unwrap(), (0, 0, 3));

    // Strict: the bad row rejects the file before anything is written.
    let strict_url = another(url);
    let fresh = open_store(&dir.path().join("strict"), strict_url.as_deref());
    let strict = import_file::<Event>(
        &fresh,
        &events,
        &mapping,
        &ImportOptions {
            strict: true,
            batch_size: 1,
        },
        &mut |_| {},
    );
    assert!(matches!(strict, Err(hearth_recs::RecsError::BadRow(ref e)) if e.line == 4));
    assert_eq!(fresh.counts().unwrap(), (0, 0, 0));

    // Items are replaced by id; reads by id return what was written.
    import_file::<Item>(&store, &items, &mapping, &options, &mut |_| {}).unwrap();
    store
        .upsert_items(&[Item {
            id: ItemId("i1".into()),
            title: "Kettle, red".into(),
            price: Some(22.5),
            available: false,
            ..Default::default()
        }])
        .unwrap();
    // The catalogue reads in the order items were first stored; a replaced item keeps its place.
    let order: Vec<String> = store.items().unwrap().into_iter().map(|i| i.id.0).collect();
    assert_eq!(order, ["i1", "i2"]);
    let kettle = store.item(&ItemId("i1".into())).unwrap().unwrap();
    assert_eq!(
        (kettle.title.as_str(), kettle.price, kettle.available),
        ("Kettle, red", Some(22.5), false)
    );
    assert_eq!(
        store
            .item(&ItemId("i2".into()))
            .unwrap()
            .unwrap()
            .categories,
        ["kitchen"]
    );
    assert_eq!(store.item(&ItemId("nope".into())).unwrap(), None);
    store
        .upsert_users(&[User {
            id: UserId("u1".into()),
            ..Default::default()
        }])
        .unwrap();
    assert!(store.user(&UserId("u1".into())).unwrap().is_some());

    // The stored data is what the models train on; it survives reopening.
    drop(store);
    let reopened = open_store(&data, url);
    let dataset = reopened.dataset(&EventWeights::default()).unwrap();
    assert_eq!(
        (
            dataset.n_users(),
            dataset.n_items(),
            dataset.interactions.len()
        ),
        (2, 2, 3)
    );
    let u1 = dataset.users.get(&UserId("u1".into())).unwrap();
    let i2 = dataset.items.get(&ItemId("i2".into())).unwrap();
    let purchase = dataset
        .interactions
        .iter()
        .find(|i| i.user == u1 && i.item == i2)
        .unwrap();
    assert_eq!(purchase.weight, 4.0, "a purchase weighs 4");

    assert_eq!(reopened.delete_items(&[ItemId("i1".into())]).unwrap(), 1);
    assert_eq!(
        reopened.delete_users(&[UserId("u2".into())]).unwrap(),
        0,
        "u2 had only events"
    );
    assert_eq!(reopened.counts().unwrap(), (1, 1, 2));
}

#[test]
fn id_less_files_with_the_same_name_are_both_stored_and_reimports_store_nothing() {
    for url in hearth_testdata::store_urls() {
        id_less_files_on(url.as_deref());
    }
}

fn id_less_files_on(url: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("data"), url);
    let mapping = ColumnMapping::default();
    let options = ImportOptions::default();
    let mut paths = Vec::new();
    for (day, rows) in [
        ("day1", "u1,i1,100\nu2,i2,110\nu2,i2,110\n"),
        ("day2", "u1,i3,200\nu3,i1,210\n"),
    ] {
        std::fs::create_dir_all(dir.path().join(day)).unwrap();
        let path = dir.path().join(day).join("events.csv");
        std::fs::write(&path, format!("user_id,item_id,timestamp\n{rows}")).unwrap();
        paths.push(path);
    }
    let day1 = import_file::<Event>(&store, &paths[0], &mapping, &options, &mut |_| {}).unwrap();
    assert_eq!((day1.stored, day1.duplicates), (3, 0));
    let day2 = import_file::<Event>(&store, &paths[1], &mapping, &options, &mut |_| {}).unwrap();
    assert_eq!(
        (day2.stored, day2.duplicates),
        (2, 0),
        "day 2 is not day 1 under the same name"
    );
    for path in &paths {
        let again = import_file::<Event>(&store, path, &mapping, &options, &mut |_| {}).unwrap();
        assert_eq!(again.stored, 0, "{}", path.display());
    }
    assert_eq!(store.counts().unwrap().2, 5);
}

/// Batches larger than one statement's rows, holding events stored before and ids repeated
/// within the batch: each event is stored once (its first copy), and the counts say so.
#[test]
fn large_batches_store_each_event_once_and_count_the_duplicates() {
    for url in hearth_testdata::store_urls() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path(), url.as_deref());
        let event = |n: usize, kind: &str| Event {
            id: format!("e{n}"),
            user: UserId(format!("u{}", n % 7)),
            item: ItemId(format!("i{n}")),
            kind: kind.into(),
            value: n.is_multiple_of(3).then_some(n as f64 / 2.0),
            timestamp: n as i64,
        };
        let n = hearth_recs::store::EVENTS_PER_STATEMENT * 2 + 37;
        let first: Vec<Event> = (0..100).map(|i| event(i, "view")).collect();
        let counts = store.insert_events(&first).unwrap();
        assert_eq!((counts.written, counts.duplicates), (100, 0), "{url:?}");
        // 0..n again (100 of them stored already), and every 10th of them twice more.
        let mut batch: Vec<Event> = (0..n).map(|i| event(i, "cart")).collect();
        batch.extend((0..n).step_by(10).map(|i| event(i, "purchase")));
        let counts = store.insert_events(&batch).unwrap();
        let repeated = n.div_ceil(10);
        assert_eq!(
            (counts.written, counts.duplicates),
            ((n - 100) as u64, (100 + repeated) as u64),
            "{url:?}"
        );
        assert_eq!(store.counts().unwrap().2, n as u64);
        // The first copy of each id is the one kept, whole.
        let seen = store.user_events(&UserId("u3".into()), 10_000).unwrap();
        assert_eq!(seen.len(), (0..n).filter(|i| i % 7 == 3).count());
        for e in &seen {
            let i: usize = e.id[1..].parse().unwrap();
            assert_eq!(
                e,
                &event(i, if i < 100 { "view" } else { "cart" }),
                "{url:?}"
            );
        }
    }
}
