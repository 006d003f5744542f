//! A PostgreSQL server for tests: the one `HEARTH_TEST_POSTGRES_URL` names (CI starts it), or
//! else one this process starts from the machine's server binaries (`initdb`, `pg_ctl`) in a
//! temporary directory on a free loopback port, stopped when the process ends. Each call of
//! [`postgres_database`] makes a fresh, empty database on it, so tests never share tables.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// `postgres://user@host:port` of the test server, without a database name.
fn server() -> &'static str {
    static SERVER: OnceLock<String> = OnceLock::new();
    SERVER.get_or_init(|| match std::env::var("HEARTH_TEST_POSTGRES_URL") {
        Ok(url) if !url.trim().is_empty() => url.trim_end_matches('/').to_owned(),
        _ => {
            // Kept for the whole process; its watchdog stops it when the process ends.
            let server = PostgresServer::start();
            let url = server.url();
            std::mem::forget(server);
            url
        }
    })
}

/// A new empty database on the test server: its URL.
pub fn postgres_database() -> String {
    create_database(server())
}

fn create_database(server: &str) -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let name = format!("hearth_test_{}_{n}", std::process::id());
    let status = Command::new("psql")
        .args([
            &format!("{server}/postgres"),
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            &format!("DROP DATABASE IF EXISTS {name}"),
            "-c",
            &format!("CREATE DATABASE {name}"),
        ])
        .env("PGOPTIONS", "-c client_min_messages=warning")
        .status()
        .expect("psql runs (PostgreSQL's client is installed)");
    assert!(
        status.success(),
        "could not create database {name} on {server}"
    );
    format!("{server}/{name}")
}

/// The stores a store-level test runs on: `None`, the embedded SQLite file, and a fresh
/// PostgreSQL database (its URL).
pub fn store_urls() -> [Option<String>; 2] {
    [None, Some(postgres_database())]
}

/// The store a test of the whole platform on data directory `dir` uses: `None` (SQLite in
/// `dir`) unless `HEARTH_TEST_STORE=postgres`, which gives each directory a PostgreSQL
/// database of its own (the same one each time it is asked for `dir`, so a platform
/// reopened on it finds its data).
pub fn test_store_url(dir: &std::path::Path) -> Option<String> {
    if std::env::var("HEARTH_TEST_STORE").as_deref() != Ok("postgres") {
        return None;
    }
    static BY_DIR: OnceLock<std::sync::Mutex<std::collections::HashMap<PathBuf, String>>> =
        OnceLock::new();
    let mut by_dir = BY_DIR
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    Some(
        by_dir
            .entry(dir.to_owned())
            .or_insert_with(postgres_database)
            .clone(),
    )
}

/// A private PostgreSQL server of one test, which it may stop and start again (a database
/// that goes away and comes back). Removed when dropped; a watchdog stops it should the test
/// process die first.
pub struct PostgresServer {
    dir: PathBuf,
    port: u16,
    root: bool,
    /// Serves TLS with a certificate for [`TLS_HOST`] signed by [`PostgresServer::ca_file`].
    tls: bool,
}

/// The one name the TLS server's certificate is for (not the address it listens on).
pub const TLS_HOST: &str = "hearth-db.test";

impl PostgresServer {
    /// initdb and start, on a free loopback port in a temporary directory.
    pub fn start() -> PostgresServer {
        Self::start_with(false)
    }

    /// The same, serving TLS (plain connections stay allowed) with a certificate for
    /// [`TLS_HOST`] only, signed by a certificate authority of its own
    /// ([`PostgresServer::ca_file`]). Needs the `openssl` command.
    pub fn start_tls() -> PostgresServer {
        Self::start_with(true)
    }

    /// The TLS server's certificate authority (PEM).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    fn start_with(tls: bool) -> PostgresServer {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("hearth-test-pg-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let root = is_root();
        if root {
            // PostgreSQL refuses to run as root: the cluster belongs to `postgres`.
            let ok = Command::new("chown")
                .args(["postgres", dir.to_str().unwrap()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown postgres {}", dir.display());
        }
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            listener.local_addr().unwrap().port()
        };
        let server = PostgresServer {
            dir,
            port,
            root,
            tls,
        };
        if tls {
            server.make_certificates();
        }
        server.run(&format!(
            "{bin}initdb -D {data} -A trust -U postgres --no-sync -E UTF8 > {dir}/initdb.log 2>&1",
            bin = pg_bin(),
            data = server.data(),
            dir = server.dir.display()
        ));
        server.resume();
        // The watchdog: when this test process exits (or is killed), stop the server. (It
        // may run as `postgres`, which cannot signal this process: it watches /proc.)
        let watch = format!(
            "while [ -d /proc/{pid} ]; do sleep 1; done; {bin}pg_ctl -D {data} -m immediate stop > /dev/null 2>&1; rm -rf {dir}",
            pid = std::process::id(),
            bin = pg_bin(),
            data = server.data(),
            dir = server.dir.display()
        );
        let child = server
            .command(&watch)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the watchdog starts");
        // It outlives this process on purpose (that is when it stops the server); a thread
        // reaps it should it end first.
        std::thread::spawn(move || {
            let mut child = child;
            let _ = child.wait();
        });
        server
    }

    /// `postgres://postgres@127.0.0.1:PORT`, without a database name.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    /// A new empty database on this server: its URL.
    pub fn database(&self) -> String {
        create_database(&self.url())
    }

    /// Stops the server at once (`immediate`: as a crash would), its data kept.
    pub fn stop(&self) {
        self.run(&format!(
            "{}pg_ctl -D {} -m immediate -w stop > /dev/null 2>&1",
            pg_bin(),
            self.data()
        ));
    }

    /// Starts the (stopped) server again on the same port.
    pub fn resume(&self) {
        let tls = if self.tls {
            format!(
                " -c ssl=on -c ssl_cert_file={dir}/server.crt -c ssl_key_file={dir}/server.key",
                dir = self.dir.display()
            )
        } else {
            String::new()
        };
        self.run(&format!(
            "{bin}pg_ctl -D {data} -l {dir}/server.log -w -o '-p {port} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200{tls}' start > /dev/null",
            bin = pg_bin(),
            data = self.data(),
            dir = self.dir.display(),
            port = self.port
        ));
    }

    /// A certificate authority, and the server's key and certificate for [`TLS_HOST`] signed
    /// by it (the key readable by the server's user only, as PostgreSQL requires).
    fn make_certificates(&self) {
        let dir = self.dir.display();
        let script = format!(
            "set -e; cd {dir}
             openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \\
               -keyout ca.key -out ca.crt -days 2 -subj /CN=hearth-test-ca
             openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \\
               -keyout server.key -out server.csr -subj /CN={TLS_HOST}
             printf 'subjectAltName=DNS:{TLS_HOST}\\n' > san.ext
             openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \\
               -out server.crt -days 2 -extfile san.ext
             chmod 600 server.key"
        );
        let out = Command::new("sh")
            .args(["-c", &script])
            .output()
            .expect("sh runs");
        assert!(
            out.status.success(),
            "making the test certificates (needs openssl): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if self.root {
            let key = self.dir.join("server.key");
            let ok = Command::new("chown")
                .args(["postgres", key.to_str().unwrap()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown postgres {}", key.display());
        }
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn command(&self, script: &str) -> Command {
        if self.root {
            let mut c = Command::new("su");
            c.args(["postgres", "-s", "/bin/sh", "-c", script]);
            c
        } else {
            let mut c = Command::new("sh");
            c.args(["-c", script]);
            c
        }
    }

    fn run(&self, script: &str) {
        let status = self.command(script).status().expect("sh runs");
        assert!(status.success(), "failed: {script}");
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let _ = self
            .command(&format!(
                "{}pg_ctl -D {} -m immediate stop > /dev/null 2>&1",
                pg_bin(),
                self.data()
            ))
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where `initdb` and `pg_ctl` are: on PATH, else Debian's versioned directory.
fn pg_bin() -> String {
    let on_path = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        .is_ok_and(|o| o.status.success());
    if on_path {
        return String::new();
    }
    let debian = PathBuf::from("/usr/lib/postgresql");
    let mut versions: Vec<PathBuf> = std::fs::read_dir(&debian)
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.sort();
    match versions.pop() {
        Some(bin) if bin.join("initdb").exists() => format!("{}/", bin.display()),
        _ => panic!(
            "no PostgreSQL server binaries (initdb): install them (scripts/setup.sh) or set HEARTH_TEST_POSTGRES_URL"
        ),
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
