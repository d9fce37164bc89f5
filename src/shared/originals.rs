//! Originals in the shared Redis, so any instance answers `GET /o/<id>` for a marker another
//! wrote: each is written once (off the request path, with the other queued writes), expires
//! after the store's age cap, and the oldest go first beyond its size cap.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;

use super::{Op, Redis};

static PUT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("put_original.lua")));

pub struct SharedOriginals {
    redis: Arc<Redis>,
    max_bytes: u64,
    max_age: Duration,
}

impl SharedOriginals {
    pub fn new(redis: Arc<Redis>, max_bytes: u64, max_age: Duration) -> SharedOriginals {
        SharedOriginals { redis, max_bytes, max_age }
    }

    /// Queues original `id` (written once; a second put of the same id changes nothing).
    pub fn put(&self, id: &str, text: &str) {
        let r = &self.redis;
        let keys = vec![r.key(&format!("o:{id}")), r.key("o_index"), r.key("o_sizes"), r.key("o_bytes")];
        let args = vec![
            text.to_string(),
            self.max_age.as_millis().to_string(),
            self.max_bytes.to_string(),
            id.to_string(),
            r.key("o:"),
        ];
        r.push(Op::Script { script: &PUT, keys, args });
    }

    /// Original `id`, if Redis has it (and answers).
    pub async fn get(&self, id: &str) -> Option<Vec<u8>> {
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(self.redis.key(&format!("o:{id}")));
        let (text,): (Option<Vec<u8>>,) = self.redis.query(&pipe).await.ok()?;
        text
    }
}
