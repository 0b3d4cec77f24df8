//! The token path's transport between instances: PostgreSQL notifications, or Redis Streams.
//!
//! Policy: the relay (`engine::relay`) decides what goes where — which runs are followed, which tokens
//! are sent, how a follower places them; the bus only carries two kinds of message. A *follow* says "the
//! instance `from` follows these runs"; a *token notice* carries a piece of a run's text to the instances
//! following it. Without `REDIS_URL` both go through PostgreSQL (`NOTIFY`, every instance hears every
//! message, and what is sent while a listener is away is gone — the relay reads the database after a
//! reconnection). With `REDIS_URL` they go through Redis Streams: follows on one stream every instance
//! reads (`<prefix>:follows`), token notices on a stream of the following instance's own
//! (`<prefix>:tokens:<instance>`), so an instance reads only the tokens it asked for. A reader remembers
//! the id of the last entry it read and, after a dropped connection, reads on from there: nothing sent
//! meanwhile is lost or read twice. Streams are trimmed (about 10,000 entries) and expire a minute after
//! their last entry, so a dead instance leaves nothing behind. The run's state (text flushed, status,
//! the end) always comes by PostgreSQL's trigger: Redis only makes the tokens quicker and never holds
//! anything the database does not.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::streams::StreamReadReply;
use redis::{AsyncConnectionConfig, Client, Value};
use uuid::Uuid;

/// Entries kept per stream (approximately: Redis trims whole blocks).
const STREAM_LENGTH: usize = 10_000;
/// A stream nobody wrote to for this long is deleted (its instance is gone).
const STREAM_EXPIRY_SECS: i64 = 60;
/// How long one read waits for an entry before it asks again (also how soon a dead server is noticed).
const READ_BLOCK: Duration = Duration::from_secs(5);
/// Entries taken per read.
const READ_COUNT: usize = 1_000;

/// A message of the token path, as a reader receives it.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// Instance `from` follows these runs.
    Follow { from: String, runs: Vec<Uuid> },
    /// A token notice (the relay's JSON).
    Tokens(String),
}

/// The Redis Streams bus of one instance.
#[derive(Clone)]
pub struct RedisBus {
    client: Client,
    /// Writes share one multiplexed connection that reconnects by itself.
    writer: ConnectionManager,
    follows_key: String,
    tokens_prefix: String,
    /// This instance's id: its token stream's name and what it signs its follows with.
    instance: String,
}

/// Where one reader goes on from: the last entry read of each stream.
#[derive(Debug, Clone)]
pub struct ReadPosition {
    follows: String,
    tokens: String,
}

impl RedisBus {
    /// The bus of `instance` on the server at `url`, its keys starting with `key_prefix` (no connection
    /// yet: it is made on first use).
    pub fn new(url: &str, key_prefix: &str, instance: &str) -> redis::RedisResult<Self> {
        let client = Client::open(url)?;
        let writer = ConnectionManager::new_lazy_with_config(
            client.clone(),
            ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(Duration::from_secs(2)))
                .set_number_of_retries(2),
        )?;
        Ok(Self {
            client,
            writer,
            follows_key: format!("{key_prefix}:follows"),
            tokens_prefix: format!("{key_prefix}:tokens:"),
            instance: instance.to_owned(),
        })
    }

    /// This instance's id, as its follows name it.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The stream `instance` reads its token notices from.
    pub fn tokens_key(&self, instance: &str) -> String {
        format!("{}{instance}", self.tokens_prefix)
    }

    /// Says that this instance follows `runs`.
    pub async fn announce(&self, runs: &[Uuid]) -> redis::RedisResult<()> {
        let runs = runs
            .iter()
            .map(Uuid::to_string)
            .collect::<Vec<_>>()
            .join(",");
        self.append(
            &self.follows_key,
            &[("from", self.instance.as_str()), ("runs", &runs)],
        )
        .await
    }

    /// Sends one token notice to each of `followers` (instance ids).
    pub async fn send_tokens(&self, followers: &[String], notice: &str) -> redis::RedisResult<()> {
        let mut pipe = redis::pipe();
        for follower in followers {
            let key = self.tokens_key(follower);
            append_to(&mut pipe, &key, &[("n", notice)]);
        }
        pipe.query_async::<()>(&mut self.writer.clone()).await
    }

    async fn append(&self, key: &str, fields: &[(&str, &str)]) -> redis::RedisResult<()> {
        let mut pipe = redis::pipe();
        append_to(&mut pipe, key, fields);
        pipe.query_async::<()>(&mut self.writer.clone()).await
    }

    /// One round trip (`PING`), for the health report.
    pub async fn ping(&self) -> redis::RedisResult<()> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.writer.clone())
            .await
            .map(|_| ())
    }

    /// A connection of its own for [`RedisBus::read`] (a blocking read holds its connection), named so an
    /// operator sees it in `CLIENT LIST`; with the position to read on from when `resume` is `None`: the
    /// follows from now on and every token notice sent to this instance.
    pub async fn reader(
        &self,
        resume: Option<ReadPosition>,
    ) -> redis::RedisResult<(MultiplexedConnection, ReadPosition)> {
        let mut connection = self
            .client
            .get_multiplexed_async_connection_with_config(
                &AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    // A blocked read answers within READ_BLOCK; longer means the server is gone.
                    .set_response_timeout(Some(READ_BLOCK + Duration::from_secs(5))),
            )
            .await?;
        redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(format!("{}reader-{}", self.tokens_prefix, self.instance))
            .query_async::<()>(&mut connection)
            .await?;
        let position = match resume {
            Some(position) => position,
            None => {
                // The newest follow so far ("0-0" when there is none): older ones were said to others.
                let newest: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
                    .arg(&self.follows_key)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1)
                    .query_async(&mut connection)
                    .await?;
                ReadPosition {
                    follows: newest
                        .into_iter()
                        .next()
                        .map_or_else(|| "0-0".to_owned(), |(id, _)| id),
                    tokens: "0-0".to_owned(),
                }
            }
        };
        Ok((connection, position))
    }

    /// Waits up to `READ_BLOCK` for what came after `position`, and moves `position` past it.
    pub async fn read(
        &self,
        connection: &mut MultiplexedConnection,
        position: &mut ReadPosition,
    ) -> redis::RedisResult<Vec<Delivery>> {
        let tokens_key = self.tokens_key(&self.instance);
        let reply: Option<StreamReadReply> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(READ_COUNT)
            .arg("BLOCK")
            .arg(READ_BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.follows_key)
            .arg(&tokens_key)
            .arg(&position.follows)
            .arg(&position.tokens)
            .query_async(connection)
            .await?;
        let mut deliveries = Vec::new();
        for stream in reply.map(|reply| reply.keys).unwrap_or_default() {
            let follows = stream.key == self.follows_key;
            for entry in stream.ids {
                if follows {
                    position.follows.clone_from(&entry.id);
                    let from = text_field(&entry.map, "from");
                    let runs = text_field(&entry.map, "runs");
                    if let (Some(from), Some(runs)) = (from, runs)
                        && from != self.instance
                    {
                        let runs = runs
                            .split(',')
                            .filter_map(|id| Uuid::parse_str(id).ok())
                            .collect();
                        deliveries.push(Delivery::Follow { from, runs });
                    }
                } else {
                    position.tokens.clone_from(&entry.id);
                    if let Some(notice) = text_field(&entry.map, "n") {
                        deliveries.push(Delivery::Tokens(notice));
                    }
                }
            }
        }
        Ok(deliveries)
    }
}

/// `XADD key MAXLEN ~ N * fields…` and `EXPIRE key`, queued on `pipe`.
fn append_to(pipe: &mut redis::Pipeline, key: &str, fields: &[(&str, &str)]) {
    let add = pipe
        .cmd("XADD")
        .arg(key)
        .arg("MAXLEN")
        .arg("~")
        .arg(STREAM_LENGTH)
        .arg("*");
    for (name, value) in fields {
        add.arg(*name).arg(*value);
    }
    add.ignore();
    pipe.cmd("EXPIRE").arg(key).arg(STREAM_EXPIRY_SECS).ignore();
}

fn text_field(map: &std::collections::HashMap<String, Value>, name: &str) -> Option<String> {
    map.get(name)
        .and_then(|value| redis::from_redis_value_ref::<String>(value).ok())
}
