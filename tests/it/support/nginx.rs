//! Debian's nginx as a real process, running the configuration shipped in `deploy/nginx/` in front of our
//! instances. Only what cannot be the same on a test machine is changed: the instances' addresses, the port
//! nginx listens on and where its files go.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The shipped site configuration.
const SHIPPED: &str = include_str!("../../../deploy/nginx/companion-hub.conf");
/// The upstream addresses in the shipped file, replaced by the instances' own.
const SHIPPED_UPSTREAMS: [&str; 2] = ["127.0.0.1:8081", "127.0.0.1:8082"];

/// A running nginx; stopped when dropped.
pub struct Nginx {
    child: Child,
    dir: PathBuf,
    /// `http://127.0.0.1:port`.
    pub base: String,
}

fn binary() -> &'static str {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|path| Path::new(path).exists())
        .unwrap_or_else(|| {
            panic!(
                "this test needs Debian's nginx (apt-get install nginx-light); .ci/run installs it"
            )
        })
}

impl Nginx {
    /// A port for nginx to listen on, known before the instances start (their `PUBLIC_URL` names it).
    pub fn free_port() -> u16 {
        let probe = TcpListener::bind("127.0.0.1:0").expect("a free port");
        probe.local_addr().expect("address").port()
    }

    /// nginx in `dir`, on `port`, in front of `instances` (two addresses, `127.0.0.1:port`); waits until it
    /// answers.
    pub async fn start(dir: &Path, port: u16, instances: [&str; 2]) -> Self {
        let access_log = dir.join("access.log");
        let mut site = SHIPPED.to_owned();
        for (shipped, actual) in SHIPPED_UPSTREAMS.iter().zip(instances) {
            assert!(
                site.contains(shipped),
                "the shipped upstream lists {shipped}"
            );
            site = site.replace(shipped, actual);
        }
        for (shipped, actual) in [
            ("listen 80;", format!("listen 127.0.0.1:{port};")),
            (
                "/var/log/nginx/companion-hub.access.log",
                access_log.display().to_string(),
            ),
        ] {
            assert!(site.contains(shipped), "the shipped site has {shipped}");
            site = site.replace(shipped, &actual);
        }
        let site_path = dir.join("companion-hub.conf");
        std::fs::write(&site_path, site).expect("write the site");
        let d = dir.display();
        // One worker: round robin then alternates strictly between the two instances.
        let main = format!(
            "daemon off;\nworker_processes 1;\nuser root;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             include {};\n}}\n",
            site_path.display()
        );
        let main_path = dir.join("nginx.conf");
        std::fs::write(&main_path, main).expect("write nginx.conf");
        let child = Command::new(binary())
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&main_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let mut nginx = Self {
            child,
            dir: dir.to_owned(),
            base: format!("http://127.0.0.1:{port}"),
        };
        nginx.wait_until_it_answers().await;
        nginx
    }

    async fn wait_until_it_answers(&mut self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = client.get(format!("{}/api/ready", self.base)).send().await
                && response.status() == 200
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nginx exited ({status}): {}", self.error_log());
            }
            assert!(
                Instant::now() < deadline,
                "nginx never answered: {}",
                self.error_log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    /// The instance (`upstream=` in the shipped log format) that answered each request starting with
    /// `request` (`"GET /api/chat/stream/"`), in the order nginx finished them; waits (at most 10 s) until
    /// there are `count`, as nginx logs a request when it has ended.
    pub async fn served_by(&self, request: &str, count: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
            let served: Vec<String> = log
                .lines()
                .filter(|line| line.contains(&format!("\"{request}")))
                .filter_map(|line| {
                    let (_, rest) = line.split_once("upstream=")?;
                    Some(rest.split_whitespace().next()?.to_owned())
                })
                .collect();
            if served.len() >= count || Instant::now() > deadline {
                return served;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its worker too (after SIGKILL the worker would go on serving the port).
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
