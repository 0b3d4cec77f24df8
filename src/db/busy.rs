//! How a SQLite connection of ours waits for the write lock another connection holds: briefly and often.
//!
//! SQLite's own busy handler (what `busy_timeout` installs) sleeps 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50
//! and then 100 ms between attempts, with no queue: under a steady stream of short writes (a reply's
//! flushes, Sends, endings — each holds the lock for a few hundred microseconds) a writer that lost once
//! keeps sleeping while others take the lock, and the first token of a tenth of the replies came 100 ms
//! late at 100 chats while the cores were three-quarters idle (docs/performance.md). Polling every 50 µs at
//! first, then every 200 µs, then every millisecond, a waiting writer gets the lock within a fraction of a
//! write after it is free; it still gives up after [`LIMIT`] as before. The handler runs on the connection's
//! own thread (sqlx's worker), never on the async runtime.

use std::ffi::{c_int, c_void};
use std::ptr::NonNull;
use std::time::Duration;

use libsqlite3_sys::{SQLITE_OK, sqlite3, sqlite3_busy_handler};

/// How long a connection waits for the lock before its statement fails with `SQLITE_BUSY`.
pub const LIMIT: Duration = Duration::from_secs(5);

/// The pause before attempt `attempt` (0 for the first retry).
fn pause(attempt: u32) -> Duration {
    match attempt {
        0..40 => Duration::from_micros(50),
        40..140 => Duration::from_micros(200),
        _ => Duration::from_millis(1),
    }
}

/// The time waited once `attempts` pauses are over.
fn waited(attempts: u32) -> Duration {
    (0..attempts).map(pause).sum()
}

extern "C" fn on_busy(_: *mut c_void, attempts: c_int) -> c_int {
    let attempts = u32::try_from(attempts).unwrap_or(0);
    if waited(attempts) >= LIMIT {
        return 0;
    }
    std::thread::sleep(pause(attempts));
    1
}

/// Makes `connection` wait for locks as described above (replacing the handler `busy_timeout` set).
/// False when SQLite refused.
pub fn install(connection: NonNull<sqlite3>) -> bool {
    // SAFETY: the handle is a live connection, locked for the caller (sqlx's `LockedSqliteHandle`); the
    // handler is a plain function that touches no state of SQLite's and takes no argument.
    unsafe {
        sqlite3_busy_handler(connection.as_ptr(), Some(on_busy), std::ptr::null_mut()) == SQLITE_OK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pauses_start_short_and_the_wait_ends_after_the_limit() {
        assert_eq!(pause(0), Duration::from_micros(50));
        assert_eq!(waited(40), Duration::from_millis(2));
        assert_eq!(waited(140), Duration::from_millis(22));
        let last = (0..).find(|&n| waited(n) >= LIMIT).expect("the wait ends");
        assert_eq!(waited(last), LIMIT, "gives up at the limit, not long after");
    }
}
