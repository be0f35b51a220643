//! The `Server-Timing` header of `POST /api/chat`: where a turn's time went, and how many
//! storage round trips it made, so callers and the benchmark can see the gateway's overhead.

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timing {
    /// The D1 batch before the LLM call (key, chat, agent, history).
    pub read_ms: u64,
    /// The rate-limiter Durable Object call, concurrent with `read_ms`.
    pub limit_ms: u64,
    pub llm_ms: u64,
    /// An agent's tool steps (validation, their D1 statements, rendering), all steps together.
    pub tools_ms: u64,
    /// The D1 batch that stores the turn.
    pub write_ms: u64,
    pub d1_calls: u32,
    pub do_calls: u32,
}

impl Timing {
    pub fn header(&self) -> String {
        format!(
            "auth-read;dur={};desc=\"key, chat, agent, history\", rate-limit;dur={}, llm;dur={}, tools;dur={}, \
             persist;dur={}, d1;desc=\"round trips\";dur={}, do;desc=\"durable object calls\";dur={}",
            self.read_ms, self.limit_ms, self.llm_ms, self.tools_ms, self.write_ms, self.d1_calls, self.do_calls
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_every_phase_and_count() {
        let t = Timing { read_ms: 3, limit_ms: 4, llm_ms: 100, tools_ms: 6, write_ms: 5, d1_calls: 2, do_calls: 1 };
        let h = t.header();
        for part in [
            "auth-read;dur=3",
            "rate-limit;dur=4",
            "llm;dur=100",
            "tools;dur=6",
            "persist;dur=5",
            "\"round trips\";dur=2",
            "calls\";dur=1",
        ] {
            assert!(h.contains(part), "{part} in {h}");
        }
    }
}
