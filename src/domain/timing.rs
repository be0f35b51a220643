//! The `Server-Timing` header of `POST /api/chat`: where a turn's time went, and which stores
//! it touched how often (D1, the workspace's own object, the key's rate-limiter object), so
//! callers and the benchmark can see the gateway's overhead.

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timing {
    /// The read before the LLM call (key, chat, agent, history), and for a key of the first
    /// format the index lookup before it.
    pub read_ms: u64,
    /// The rate-limiter Durable Object call, concurrent with `read_ms`.
    pub limit_ms: u64,
    pub llm_ms: u64,
    /// An agent's tool steps (validation, their D1 statements, rendering), all steps together.
    pub tools_ms: u64,
    /// The batch that stores the turn.
    pub write_ms: u64,
    /// Round trips to D1 (the shared database): the index of a key of the first format, and
    /// everything of a workspace not moved to its own object yet.
    pub d1_calls: u32,
    /// Round trips to the workspace's own object.
    pub ws_calls: u32,
    /// Calls to the key's rate-limiter object.
    pub do_calls: u32,
}

impl Timing {
    pub fn header(&self) -> String {
        format!(
            "auth-read;dur={};desc=\"key, chat, agent, history\", rate-limit;dur={}, llm;dur={}, tools;dur={}, \
             persist;dur={}, d1;desc=\"round trips\";dur={}, ws;desc=\"workspace object round trips\";dur={}, \
             do;desc=\"durable object calls\";dur={}",
            self.read_ms,
            self.limit_ms,
            self.llm_ms,
            self.tools_ms,
            self.write_ms,
            self.d1_calls,
            self.ws_calls,
            self.do_calls
        )
    }

    /// The index lookup of a key of the first format, when there was one.
    pub fn index(&mut self, via_index: bool, ms: u64) {
        if via_index {
            self.d1_calls += 1;
            self.read_ms += ms;
        }
    }

    /// `n` round trips to the workspace's database (its object, or D1 before its move).
    pub fn store(&mut self, is_object: bool, n: u32) {
        if is_object {
            self.ws_calls += n;
        } else {
            self.d1_calls += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_every_phase_and_count() {
        let mut t =
            Timing { read_ms: 3, limit_ms: 4, llm_ms: 100, tools_ms: 6, write_ms: 5, do_calls: 1, ..Timing::default() };
        t.store(false, 2);
        t.store(true, 4);
        t.index(false, 50);
        let h = t.header();
        for part in [
            "auth-read;dur=3",
            "rate-limit;dur=4",
            "llm;dur=100",
            "tools;dur=6",
            "persist;dur=5",
            "\"round trips\";dur=2",
            "ws;desc=\"workspace object round trips\";dur=4",
            "calls\";dur=1",
        ] {
            assert!(h.contains(part), "{part} in {h}");
        }
    }
}
