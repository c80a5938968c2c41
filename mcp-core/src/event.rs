//! The event envelope of DESIGN.md and its `<ms>-<seq>` id.

use std::{collections::BTreeMap, fmt, str::FromStr};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The id of an event: milliseconds since the epoch and a sequence number within that
/// millisecond, written `<ms>-<seq>` exactly like a Redis stream id, so a client's
/// `Last-Event-ID` means the same thing whichever bus is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId {
    ms: u64,
    seq: u64,
}

impl EventId {
    /// The smallest id; every published event has a larger one.
    pub const ZERO: EventId = EventId { ms: 0, seq: 0 };

    pub fn new(ms: u64, seq: u64) -> Self {
        Self { ms, seq }
    }

    pub fn ms(self) -> u64 {
        self.ms
    }

    pub fn seq(self) -> u64 {
        self.seq
    }

    /// The next id after `self` for a clock reading of `now_ms`: the clock's millisecond when
    /// it has moved on, otherwise the same millisecond with the next sequence number. This keeps
    /// ids strictly increasing even when the wall clock stalls or steps backwards.
    pub fn next_after(self, now_ms: u64) -> Self {
        if now_ms > self.ms {
            Self { ms: now_ms, seq: 0 }
        } else {
            Self {
                ms: self.ms,
                seq: self.seq + 1,
            }
        }
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// An event id that is not of the form `<ms>-<seq>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid event id {0:?}: expected <milliseconds>-<sequence>, e.g. 1763773200000-0")]
pub struct ParseEventIdError(String);

impl FromStr for EventId {
    type Err = ParseEventIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseEventIdError(s.chars().take(64).collect());
        let (ms, seq) = s.split_once('-').ok_or_else(err)?;
        let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return Err(err());
        }
        Ok(Self {
            ms: ms.parse().map_err(|_| err())?,
            seq: seq.parse().map_err(|_| err())?,
        })
    }
}

impl Serialize for EventId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An event before a bus has given it an id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// The stream the event belongs to, e.g. `tasks`.
    pub topic: String,
    /// What happened, e.g. `task_updated`.
    #[serde(rename = "type")]
    pub kind: String,
    pub at: DateTime<Utc>,
    /// Who caused it, e.g. `agent:claude` or an email address.
    pub actor: String,
    /// The fields subscribers filter on, e.g. `task_id`, `assignee`, `repository`.
    #[serde(default)]
    pub subject: BTreeMap<String, String>,
    #[serde(default)]
    pub data: serde_json::Value,
}

impl NewEvent {
    pub fn new(
        topic: impl Into<String>,
        kind: impl Into<String>,
        actor: impl Into<String>,
    ) -> Self {
        Self {
            topic: topic.into(),
            kind: kind.into(),
            at: Utc::now(),
            actor: actor.into(),
            subject: BTreeMap::new(),
            data: serde_json::Value::Null,
        }
    }

    pub fn with_subject(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.subject.insert(key.into(), value.into());
        self
    }

    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.data = data;
        self
    }

    pub fn with_at(mut self, at: DateTime<Utc>) -> Self {
        self.at = at;
        self
    }

    /// The published event, once a bus has chosen its id.
    pub fn into_event(self, id: EventId) -> Event {
        Event {
            id,
            topic: self.topic,
            kind: self.kind,
            at: self.at,
            actor: self.actor,
            subject: self.subject,
            data: self.data,
        }
    }
}

/// The one envelope used everywhere: SSE `data:`, WebSocket message, Redis stream entry, sink
/// body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: EventId,
    pub topic: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub at: DateTime<Utc>,
    pub actor: String,
    #[serde(default)]
    pub subject: BTreeMap<String, String>,
    #[serde(default)]
    pub data: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_round_trips_and_orders_numerically() {
        let a: EventId = "1763773200000-9".parse().expect("valid id");
        let b: EventId = "1763773200000-10".parse().expect("valid id");
        assert!(a < b, "sequence compares as a number, not as text");
        assert_eq!(b.to_string(), "1763773200000-10");
        assert!(EventId::new(2, 0) > EventId::new(1, 99));
    }

    #[test]
    fn malformed_ids_are_rejected() {
        for bad in [
            "", "-", "1-", "-1", "1", "a-1", "1-b", "1--1", "+1-2", "1-2-3", " 1-2",
        ] {
            assert!(bad.parse::<EventId>().is_err(), "{bad:?} should not parse");
        }
        assert!("99999999999999999999999-0".parse::<EventId>().is_err());
    }

    #[test]
    fn next_after_is_strictly_increasing_when_the_clock_stalls_or_steps_back() {
        let mut id = EventId::new(1000, 0);
        for now in [1000, 999, 1000, 1001, 5, 1001] {
            let next = id.next_after(now);
            assert!(next > id);
            id = next;
        }
        assert_eq!(id, EventId::new(1001, 2));
    }

    #[test]
    fn envelope_has_the_documented_shape() {
        let event = NewEvent::new("tasks", "task_updated", "agent:claude")
            .with_subject("task_id", "t1")
            .with_data(serde_json::json!({"title": "x"}))
            .into_event(EventId::new(1763773200000, 0));
        let json = serde_json::to_value(&event).expect("serializes");
        assert_eq!(json["id"], "1763773200000-0");
        assert_eq!(json["type"], "task_updated");
        assert_eq!(json["subject"]["task_id"], "t1");
        let back: Event = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back, event);
    }
}
