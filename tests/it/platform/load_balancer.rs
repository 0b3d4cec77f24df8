//! A real load balancer: Debian's nginx with the configuration shipped in `deploy/nginx/`, round robin and
//! no stickiness, in front of two instances of our binary on one PostgreSQL database. Through it a reply
//! streams token by token, a reconnect lands on the other instance and continues exactly, and rate limits
//! count the real client (TRUSTED_PROXIES), once across both instances.

use std::net::IpAddr;

use reqwest::StatusCode;
use serde_json::json;

use crate::chat::send;
use crate::support::fake_llm::{FakeLlm, Streamed, gate, pieces};
use crate::support::nginx::Nginx;
use crate::support::process::ServerProcess;
use crate::support::sse::{last, last_token_id, read, text_of};
use crate::support::visitor::Visitor;
use crate::support::{Backend, TestDatabase, require_postgres};

/// Two instances on one fresh PostgreSQL database, trusting the proxy on 127.0.0.1, and nginx in front.
struct Deployment {
    nginx: Nginx,
    a: ServerProcess,
    b: ServerProcess,
    _database: TestDatabase,
    _dir: tempfile::TempDir,
}

async fn deployment(llm: &FakeLlm, extra: &[(&str, &str)]) -> Deployment {
    require_postgres();
    let dir = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::create(Backend::Postgres, dir.path()).await;
    let port = Nginx::free_port();
    let instance = |name: &str| {
        let mut vars = vec![
            ("DATABASE_URL".to_owned(), database.url.clone()),
            ("DATA_DIR".to_owned(), dir.path().display().to_string()),
            ("INSTANCE_NAME".to_owned(), name.to_owned()),
            ("TRUSTED_PROXIES".to_owned(), "127.0.0.1/32".to_owned()),
            // The origin people use is the proxy's (forms are checked against it).
            ("PUBLIC_URL".to_owned(), format!("http://127.0.0.1:{port}")),
        ];
        vars.extend(llm.env());
        vars.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        ServerProcess::start(dir.path(), &vars)
    };
    let (a, b) = (instance("web-a"), instance("web-b"));
    a.ready().await;
    b.ready().await;
    let nginx = Nginx::start(dir.path(), port, [&a.address, &b.address]).await;
    Deployment {
        nginx,
        a,
        b,
        _database: database,
        _dir: dir,
    }
}

/// Both need PostgreSQL and nginx (`…::postgres::…`, left out of the plain test run).
mod postgres {
    use super::*;

    #[tokio::test]
    async fn through_nginx_a_reply_streams_token_by_token_and_a_reconnect_continues_exactly_on_the_other_instance()
     {
        let llm = FakeLlm::start().await;
        let deployment = deployment(&llm, &[]).await;
        // Registration reads its form from one instance and posts it to the other: sessions and CSRF secrets
        // are the database's, not an instance's.
        let alice = Visitor::signed_in_at(deployment.nginx.base.clone(), "alice").await;
        let companion = alice
            .create_companion(json!({"name": "Mira", "age": 26}))
            .await;
        let companion = companion["id"].as_str().expect("id").to_owned();

        let hold = gate();
        llm.stream(Streamed::Paused {
            before: pieces(&["Über", " die "]),
            gate: hold.clone(),
            after: pieces(&["Brücke", " gehen", " wir."]),
        });
        let (status, started) = send(&alice, &companion, "Wohin?").await;
        assert!(status.is_success(), "{status}: {started}");
        let url = started["stream_url"].as_str().unwrap().to_owned();

        // The model holds the rest back: the client sees "Über die" while the reply is unfinished, event by
        // event as the instance sends them.
        let first = read(&alice, &url, None, |events| text_of(events) == "Über die").await;
        assert_eq!(text_of(&first), "Über die");
        let offset = last_token_id(&first);

        // The client reconnects with its last id; nginx sends it to the next instance in the rotation. The
        // model goes on once the reconnected stream has begun.
        let rest = read(&alice, &url, Some(&offset), |events| {
            if events.len() == 1 {
                hold.add_permits(1);
            }
            false
        })
        .await;
        assert!(
            rest.iter()
                .all(|e| e.event != "reset" && e.data["code"] != "run_elsewhere"),
            "the reconnect continues where it stopped: {rest:?}"
        );
        let stored = last(&rest, "done")
            .expect("the end comes through nginx")
            .data["content"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(stored, "Über die Brücke gehen wir.");
        assert_eq!(
            format!("{}{}", text_of(&first), text_of(&rest)),
            stored,
            "byte for byte, nothing lost or repeated"
        );

        // nginx's log (the shipped format names the instance) shows the two halves came from different
        // instances: no stickiness, and the other instance continued exactly.
        let served_by = deployment.nginx.served_by("GET /api/chat/stream/", 2).await;
        assert_eq!(served_by.len(), 2, "two stream requests: {served_by:?}");
        assert_ne!(served_by[0], served_by[1], "round robin, no stickiness");
        for upstream in &served_by {
            assert!(
                [&deployment.a.address, &deployment.b.address].contains(&upstream),
                "{upstream} is one of the instances"
            );
        }

        // What makes nginx pass events on: the instances say so on every event stream (nginx reads the header
        // and does not forward it).
        let direct = alice.on(deployment.a.url(""));
        let response = direct
            .client
            .get(direct.url(&url))
            .send()
            .await
            .expect("stream request");
        assert_eq!(response.headers()["x-accel-buffering"], "no");
    }

    #[tokio::test]
    async fn through_nginx_rate_limits_count_the_real_client_once_across_both_instances() {
        let llm = FakeLlm::start().await;
        let deployment = deployment(&llm, &[("RATE_LIMIT_REGISTER", "2/24h")]).await;
        // A new browser each time (a signed-in one would be sent home), all from one address unless named.
        let register = |ip: &str, forwarded_for: &'static str, name: &'static str| {
            let visitor = Visitor::from_address(
                deployment.nginx.base.clone(),
                Some(ip.parse::<IpAddr>().expect("an address")),
            );
            async move {
                visitor
                    .register_forwarded(forwarded_for, name)
                    .await
                    .status()
            }
        };
        // Every connection reaches the instances from nginx (127.0.0.1); the client behind it is 127.0.0.2.
        for name in ["user1", "user2"] {
            let status = register("127.0.0.2", "198.51.100.1", name).await;
            assert_eq!(status, StatusCode::SEE_OTHER, "{name} registers");
            // A registration is two requests (the form, the post): one more shifts the rotation so the next
            // post goes to the other instance.
            let shift = reqwest::get(format!("{}/api/live", deployment.nginx.base)).await;
            assert_eq!(shift.expect("live").status(), StatusCode::OK);
        }
        // The registrations went to both instances, and the limit counted them once: the third is refused,
        // whatever the client writes into X-Forwarded-For.
        for spoofed in ["198.51.100.2", "127.0.0.1"] {
            assert_eq!(
                register("127.0.0.2", spoofed, "user3").await,
                StatusCode::TOO_MANY_REQUESTS,
                "a third registration from 127.0.0.2 (claiming {spoofed})"
            );
        }
        // Another client behind the same proxy has its own allowance.
        assert_eq!(
            register("127.0.0.3", "198.51.100.1", "user4").await,
            StatusCode::SEE_OTHER,
            "127.0.0.3 is not limited by what 127.0.0.2 did"
        );
        let registered_on: std::collections::BTreeSet<String> = deployment
            .nginx
            .served_by("POST /register", 5)
            .await
            .into_iter()
            .collect();
        assert_eq!(
            registered_on.len(),
            2,
            "both instances took registrations: {registered_on:?}"
        );
    }
}
