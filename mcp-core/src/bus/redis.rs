//! `RedisBus`: events shared between processes through one Redis stream.
//!
//! `publish` appends with `XADD … MAXLEN ~ N *`, so Redis chooses the id (`<ms>-<seq>`, the
//! same form every bus uses). One reader task per bus follows the stream with blocking `XREAD`
//! on a connection of its own (no response timeout: a block of seconds is normal there) and
//! fans each entry out to the local subscribers; it reconnects with capped exponential backoff
//! and continues from the last id it saw, telling subscribers to resync if Redis trimmed entries
//! it had not read. A subscriber that resumes with a cursor gets the entries after it read back
//! with `XRANGE`, then the live ones; duplicates are dropped by id.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use async_trait::async_trait;
use redis::{AsyncConnectionConfig, Client, aio::ConnectionManager, aio::ConnectionManagerConfig};

use super::{BusError, Delivery, EventBus, EventFilter, Fanout, Subscription};
use crate::{Event, EventId, NewEvent};

/// Where and how a [`RedisBus`] keeps its stream.
#[derive(Debug, Clone)]
pub struct RedisBusConfig {
    /// `redis://host:port/db`.
    pub url: String,
    /// The stream's key.
    pub stream: String,
    /// Roughly how many entries the stream keeps (`MAXLEN ~`); older ones are trimmed.
    pub max_len: usize,
    /// How many undelivered events one local subscriber may have queued.
    pub subscriber_capacity: usize,
    /// At most this many events are replayed to a resuming subscriber; an older cursor gets
    /// [`Delivery::Resync`].
    pub max_replay: usize,
}

impl RedisBusConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            stream: "switchboard:events".into(),
            max_len: 100_000,
            subscriber_capacity: 4_096,
            max_replay: 10_000,
        }
    }

    pub fn with_stream(mut self, stream: impl Into<String>) -> Self {
        self.stream = stream.into();
        self
    }

    pub fn with_max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len;
        self
    }
}

/// The [`EventBus`] for several processes, on Redis Streams.
pub struct RedisBus {
    config: RedisBusConfig,
    publisher: ConnectionManager,
    subscribers: Arc<Mutex<Fanout>>,
    reader: tokio::task::AbortHandle,
}

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBus")
            .field("stream", &self.config.stream)
            .finish_non_exhaustive()
    }
}

impl Drop for RedisBus {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

const READ_BLOCK: Duration = Duration::from_secs(5);
const READ_BATCH: usize = 512;
const MAX_BACKOFF: Duration = Duration::from_secs(5);

fn unavailable(error: redis::RedisError) -> BusError {
    BusError::Unavailable(error.to_string())
}

/// One stream entry as redis-rs reads it: id and field map.
type Entry = (String, HashMap<String, String>);

/// An `XREAD` reply: entries per stream, or nil when the block timed out.
type ReadReply = Option<Vec<(String, Vec<Entry>)>>;

fn lock(subscribers: &Mutex<Fanout>) -> MutexGuard<'_, Fanout> {
    subscribers
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl RedisBus {
    /// Connects, and starts following the stream from its current end.
    pub async fn connect(config: RedisBusConfig) -> Result<Self, BusError> {
        let client = Client::open(config.url.as_str()).map_err(unavailable)?;
        let mut publisher = client
            .get_connection_manager_with_config(
                ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(Duration::from_secs(2)))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_secs(1)),
            )
            .await
            .map_err(unavailable)?;
        let newest: Vec<Entry> = redis::cmd("XREVRANGE")
            .arg(&config.stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut publisher)
            .await
            .map_err(unavailable)?;
        let start = newest
            .first()
            .map_or_else(|| "0-0".to_owned(), |(id, _)| id.clone());
        let subscribers = Arc::new(Mutex::new(Fanout::default()));
        let reader = tokio::spawn(follow(
            client,
            config.stream.clone(),
            start,
            subscribers.clone(),
        ))
        .abort_handle();
        Ok(Self {
            config,
            publisher,
            subscribers,
            reader,
        })
    }

    /// The entries after `cursor`, oldest first, or `None` when Redis no longer holds all of
    /// them (trimmed) or there are more than `max_replay`.
    async fn replay(&self, cursor: EventId) -> Result<Option<Vec<Arc<Event>>>, BusError> {
        let mut conn = self.publisher.clone();
        if trimmed_after(&mut conn, &self.config.stream, cursor).await? {
            return Ok(None);
        }
        let mut events = Vec::new();
        let mut from = cursor;
        loop {
            let page: redis::RedisResult<Vec<Entry>> = redis::cmd("XRANGE")
                .arg(&self.config.stream)
                .arg(format!("({from}"))
                .arg("+")
                .arg("COUNT")
                .arg(1_000)
                .query_async(&mut conn)
                .await;
            let page = match page {
                Ok(page) => page,
                Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() => {
                    return Err(unavailable(e));
                }
                // Redis refused the cursor itself (an id it cannot take): nothing to replay from.
                Err(_) => return Ok(None),
            };
            let Some((last, _)) = page.last() else {
                return Ok(Some(events));
            };
            from = parse_id(last)?;
            for entry in &page {
                if let Some(event) = decode(entry) {
                    events.push(Arc::new(event));
                }
            }
            if events.len() > self.config.max_replay {
                return Ok(None);
            }
        }
    }
}

/// Whether Redis may have trimmed entries newer than `cursor`, so that a replay from it would
/// have a hole: the stream has lost entries (`entries-added` exceeds its length) and its oldest
/// entry is newer than the cursor. (Trimming does not move `max-deleted-entry-id`.)
async fn trimmed_after<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
    cursor: EventId,
) -> Result<bool, BusError> {
    let info: redis::RedisResult<HashMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(stream)
        .query_async(conn)
        .await;
    let info = match info {
        Ok(info) => info,
        Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() => {
            return Err(unavailable(e));
        }
        // "no such key": nothing was ever written, so nothing was trimmed.
        Err(_) => return Ok(false),
    };
    let number = |key: &str| match info.get(key) {
        Some(redis::Value::Int(n)) => Some(*n),
        _ => None,
    };
    let text = |key: &str| match info.get(key) {
        Some(redis::Value::BulkString(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Some(redis::Value::SimpleString(text)) => Some(text.clone()),
        _ => None,
    };
    let lost_some = match (number("entries-added"), number("length")) {
        (Some(added), Some(length)) => added > length,
        // Before Redis 7 there is no count of what was added: assume the worst.
        _ => true,
    };
    let first = match text("recorded-first-entry-id") {
        Some(id) => parse_id(&id).ok(),
        // Before Redis 7: ask for the oldest entry.
        None => {
            let oldest: Vec<Entry> = redis::cmd("XRANGE")
                .arg(stream)
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(1)
                .query_async(conn)
                .await
                .map_err(unavailable)?;
            oldest.first().and_then(|(id, _)| parse_id(id).ok())
        }
    };
    Ok(lost_some && first.is_some_and(|first| cursor < first))
}

fn parse_id(id: &str) -> Result<EventId, BusError> {
    id.parse()
        .map_err(|e| BusError::Unavailable(format!("redis returned {e}")))
}

/// The event an entry holds, or `None` for an entry that is not one of ours.
fn decode((id, fields): &Entry) -> Option<Event> {
    let id = id.parse().ok()?;
    let event: NewEvent = serde_json::from_str(fields.get("event")?).ok()?;
    Some(event.into_event(id))
}

/// The reader: follows the stream from `last` and fans entries out, forever (until aborted).
async fn follow(client: Client, stream: String, mut last: String, subscribers: Arc<Mutex<Fanout>>) {
    let mut backoff = Duration::from_millis(100);
    let mut connected_before = false;
    loop {
        // No 500 ms default: a blocking read waits READ_BLOCK by design. But not forever either:
        // a half-open connection must be noticed.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(READ_BLOCK + Duration::from_secs(5)));
        let mut conn = match client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(conn) => conn,
            Err(error) => {
                tracing::warn!(%error, ?backoff, "redis bus reader cannot connect; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        if connected_before {
            // Entries trimmed while we were away are lost to this reader: say so.
            let gap = match last.parse::<EventId>() {
                Ok(cursor) => trimmed_after(&mut conn, &stream, cursor)
                    .await
                    .unwrap_or(false),
                Err(_) => false,
            };
            if gap {
                lock(&subscribers).resync_all();
            }
        }
        connected_before = true;
        loop {
            let reply: redis::RedisResult<ReadReply> = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(READ_BATCH)
                .arg("BLOCK")
                .arg(READ_BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(&stream)
                .arg(&last)
                .query_async(&mut conn)
                .await;
            let streams = match reply {
                Ok(Some(streams)) => streams,
                Ok(None) => {
                    backoff = Duration::from_millis(100);
                    continue;
                }
                Err(error) => {
                    // Back off here too: an error Redis answers at once (LOADING, WRONGTYPE)
                    // must not turn into a hot loop.
                    tracing::warn!(%error, ?backoff, "redis bus reader failed; reconnecting");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    break;
                }
            };
            backoff = Duration::from_millis(100);
            for (_, entries) in streams {
                let mut fanout = lock(&subscribers);
                for entry in &entries {
                    if let Some(event) = decode(entry) {
                        fanout.deliver(&Arc::new(event));
                    }
                    last.clone_from(&entry.0);
                }
            }
        }
    }
}

#[async_trait]
impl EventBus for RedisBus {
    async fn publish(&self, event: NewEvent) -> Result<Arc<Event>, BusError> {
        let body = serde_json::to_string(&event)
            .map_err(|e| BusError::Unavailable(format!("cannot encode event: {e}")))?;
        let mut conn = self.publisher.clone();
        let id: String = redis::cmd("XADD")
            .arg(&self.config.stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.config.max_len)
            .arg("*")
            .arg("event")
            .arg(body)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(Arc::new(event.into_event(parse_id(&id)?)))
    }

    async fn subscribe(
        &self,
        filter: EventFilter,
        after: Option<EventId>,
    ) -> Result<Subscription, BusError> {
        // Live delivery starts before the replay is read, so nothing falls in between; what
        // arrives both ways is dropped by id in the subscription.
        let (rx, overflowed) =
            lock(&self.subscribers).add(filter.clone(), self.config.subscriber_capacity);
        let mut backlog = VecDeque::new();
        if let Some(cursor) = after {
            match self.replay(cursor).await? {
                Some(events) => backlog.extend(
                    events
                        .into_iter()
                        .filter(|event| filter.matches(event))
                        .map(Delivery::Event),
                ),
                None => backlog.push_back(Delivery::Resync),
            }
        }
        Ok(Subscription::new(backlog, rx, overflowed))
    }
}
