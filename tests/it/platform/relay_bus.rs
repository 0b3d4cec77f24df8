//! The Redis Streams bus of the relay on a real Redis server: each instance reads only the tokens sent
//! to it and the follows of others, and a reader whose connection dropped goes on from its last entry,
//! nothing lost or read twice.

mod redis {
    use companion_hub::engine::bus::{Delivery, RedisBus};
    use uuid::Uuid;

    use crate::support::redis::{kill_readers, require_redis, unique_prefix};

    #[tokio::test]
    async fn a_reader_goes_on_from_its_last_entry_after_its_connection_drops() {
        let url = require_redis();
        let prefix = unique_prefix();
        let a = RedisBus::new(&url, &prefix, "a").expect("bus a");
        let b = RedisBus::new(&url, &prefix, "b").expect("bus b");
        let run = Uuid::now_v7();
        // Said before b reads: not b's business (a reader starts with the follows from now on).
        a.announce(&[Uuid::now_v7()]).await.expect("announce");
        let (mut connection, mut position) = b.reader(None).await.expect("reader");
        a.send_tokens(&["b".into()], "one").await.expect("send");
        a.send_tokens(&["c".into()], "for c only")
            .await
            .expect("send");
        assert_eq!(
            b.read(&mut connection, &mut position).await.expect("read"),
            vec![Delivery::Tokens("one".into())]
        );

        // The connection drops; meanwhile a follows a run and sends two notices.
        assert_eq!(kill_readers(&url, &prefix).await, 1, "b's reader");
        assert!(
            b.read(&mut connection, &mut position).await.is_err(),
            "the dropped connection is noticed"
        );
        a.send_tokens(&["b".into()], "two").await.expect("send");
        a.announce(&[run]).await.expect("announce");
        a.send_tokens(&["b".into(), "c".into()], "three")
            .await
            .expect("send");
        // b's own follow never comes back to b.
        b.announce(&[run]).await.expect("announce");

        let (mut connection, mut position) = b.reader(Some(position)).await.expect("reconnect");
        assert_eq!(
            b.read(&mut connection, &mut position).await.expect("read"),
            vec![
                Delivery::Follow {
                    from: "a".into(),
                    runs: vec![run],
                },
                Delivery::Tokens("two".into()),
                Delivery::Tokens("three".into()),
            ],
            "everything after the last entry read, once, in order"
        );

        // A reader that starts later (c) gets every notice sent to its instance and none of the follows
        // said before it started.
        let c = RedisBus::new(&url, &prefix, "c").expect("bus c");
        let (mut connection, mut position) = c.reader(None).await.expect("reader");
        assert_eq!(
            c.read(&mut connection, &mut position).await.expect("read"),
            vec![
                Delivery::Tokens("for c only".into()),
                Delivery::Tokens("three".into()),
            ]
        );
        assert!(c.ping().await.is_ok());
    }
}
