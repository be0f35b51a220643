//! An agent's turn over several model calls: what each executed tool call leaves behind (for
//! the stored message, the chat read API, the stream's `tool` event and later turns), and the
//! step budget.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::knowledge::{AgentKnowledge, Kind};
use super::llm::{FunctionCall, ToolCall, Turn};
use super::sse::Usage;
use super::tools::Tool;

/// Model calls per turn when `AGENT_MAX_STEPS` is not set.
pub const DEFAULT_MAX_STEPS: u32 = 4;

/// The most sources an answer keeps (retrieved records, then what tools returned, first
/// come): they are stored with the message and sent with the response.
pub const MAX_SOURCES: usize = 50;

/// One executed tool call, as stored with the answer and shown by `GET /api/chats/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trace {
    pub name: String,
    /// The arguments as the model sent them: parsed when they are JSON, else the raw text.
    pub arguments: Value,
    pub result_count: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Trace {
    pub fn new(call: &ToolCall, result_count: usize, error: Option<String>) -> Self {
        let arguments = serde_json::from_str::<Value>(&call.function.arguments)
            .unwrap_or_else(|_| Value::String(call.function.arguments.clone()));
        Self { name: call.function.name.clone(), arguments, result_count, error }
    }

    /// The stream's `tool` event data.
    pub fn event(&self) -> Value {
        let mut event = json!({ "name": self.name, "arguments": self.arguments, "resultCount": self.result_count });
        if let Some(error) = &self.error {
            event["error"] = json!(error);
        }
        event
    }
}

/// The stored column: `None` when no tool ran.
pub fn traces_to_stored(traces: &[Trace]) -> Option<String> {
    (!traces.is_empty()).then(|| json!(traces).to_string())
}

/// From the stored column; `NULL` or unreadable: none.
pub fn traces_from_stored(stored: Option<&str>) -> Vec<Trace> {
    stored.and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default()
}

/// A past answer's tool exchange, as it is sent back in later turns (when the budget allows):
/// the calls, and for each a short result. The rows themselves are not kept, so the result says
/// how many there were and that calling again gives them.
pub fn exchange(traces: &[Trace]) -> Vec<Turn> {
    if traces.is_empty() {
        return Vec::new();
    }
    let calls: Vec<ToolCall> = traces
        .iter()
        .enumerate()
        .map(|(i, t)| ToolCall {
            id: past_call_id(i),
            kind: "function".into(),
            function: FunctionCall {
                name: t.name.clone(),
                arguments: match &t.arguments {
                    Value::String(raw) => raw.clone(),
                    other => other.to_string(),
                },
            },
        })
        .collect();
    let mut turns = vec![Turn::calling(calls)];
    for (i, t) in traces.iter().enumerate() {
        let result = match &t.error {
            Some(error) => json!({ "error": error }),
            None => json!({
                "resultCount": t.result_count,
                "note": "a result of an earlier turn, not kept; call the tool again to see its rows"
            }),
        };
        turns.push(Turn::tool_result(&past_call_id(i), result.to_string()));
    }
    turns
}

/// Ids of a past exchange's calls: nine letters and digits, the strictest form providers
/// accept (Mistral's).
fn past_call_id(i: usize) -> String {
    format!("past{:05}", i % 100_000)
}

/// Usage over every call of a turn: the provider's numbers where every step had them, and
/// estimated as soon as one step's were.
pub fn add_usage(total: &mut Usage, step: &Usage) {
    total.prompt_tokens = total.prompt_tokens.saturating_add(step.prompt_tokens);
    total.completion_tokens = total.completion_tokens.saturating_add(step.completion_tokens);
    total.estimated |= step.estimated;
}

/// The tools a turn offers, and the record kinds they may read: an agent's own tools (none by
/// default) over the kinds its knowledge settings allow, nothing when its knowledge is off; the
/// default assistant (`agent` is `None`) gets all three once the workspace holds records.
pub fn offered(agent: Option<(&[Tool], &AgentKnowledge)>, has_records: bool) -> Option<(Vec<Tool>, Vec<Kind>)> {
    let (tools, kinds) = match agent {
        None if has_records => (Tool::ALL.to_vec(), Kind::all().to_vec()),
        None => return None,
        Some((_, knowledge)) if !knowledge.enabled => return None,
        Some((tools, knowledge)) => (tools.to_vec(), knowledge.kinds.clone().unwrap_or_else(|| Kind::all().to_vec())),
    };
    (!tools.is_empty() && !kinds.is_empty()).then_some((tools, kinds))
}

/// Whether call number `step` (from 1) is the last one allowed: it is then made with
/// `tool_choice: "none"`, so the turn ends with an answer.
pub fn is_final_step(step: u32, max_steps: u32) -> bool {
    step >= max_steps.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::llm::Role;

    fn call(name: &str, arguments: &str) -> ToolCall {
        ToolCall {
            id: "c1".into(),
            kind: "function".into(),
            function: FunctionCall { name: name.into(), arguments: arguments.into() },
        }
    }

    #[test]
    fn traces_keep_parsed_or_raw_arguments_and_round_trip() {
        let ok = Trace::new(&call("query_records", r#"{"kind":"deal"}"#), 5, None);
        assert_eq!(ok.arguments, json!({"kind": "deal"}));
        let raw = Trace::new(&call("query_records", "{not json"), 0, Some("arguments are not JSON".into()));
        assert_eq!(raw.arguments, json!("{not json"));
        let stored = traces_to_stored(&[ok.clone(), raw.clone()]);
        assert_eq!(traces_from_stored(stored.as_deref()), vec![ok.clone(), raw]);
        assert_eq!(traces_to_stored(&[]), None);
        assert_eq!(traces_from_stored(Some("garbage")), Vec::<Trace>::new());
        assert_eq!(ok.event(), json!({"name": "query_records", "arguments": {"kind": "deal"}, "resultCount": 5}));
        let stored: Value = serde_json::from_str(&traces_to_stored(&[ok]).unwrap()).unwrap();
        assert_eq!(stored, json!([{"name": "query_records", "arguments": {"kind": "deal"}, "resultCount": 5}]));
    }

    #[test]
    fn an_exchange_pairs_every_call_with_a_result() {
        let traces = vec![
            Trace::new(&call("query_records", r#"{"kind":"deal"}"#), 5, None),
            Trace::new(&call("nope", "{}"), 0, Some("unknown tool".into())),
        ];
        let turns = exchange(&traces);
        assert_eq!(turns.len(), 3);
        assert_eq!(turns[0].role, Role::Assistant);
        assert_eq!(turns[0].tool_calls.len(), 2);
        assert_eq!(turns[0].tool_calls[0].function.arguments, r#"{"kind":"deal"}"#);
        for (i, t) in turns[1..].iter().enumerate() {
            assert_eq!(t.role, Role::Tool);
            assert_eq!(t.tool_call_id.as_deref(), Some(turns[0].tool_calls[i].id.as_str()));
        }
        assert!(turns[2].content.contains("unknown tool"));
        assert!(exchange(&[]).is_empty());
    }

    #[test]
    fn what_a_turn_offers() {
        let on = AgentKnowledge::default();
        let deals_only = AgentKnowledge { enabled: true, kinds: Some(vec![Kind::Deal]) };
        let off = AgentKnowledge { enabled: false, kinds: None };
        let all = Tool::ALL.to_vec();
        // The default assistant: every tool once there are records.
        assert_eq!(offered(None, true), Some((all.clone(), Kind::all().to_vec())));
        assert_eq!(offered(None, false), None);
        // Agents: their own tools (none by default), within their knowledge.
        assert_eq!(offered(Some((&[], &on)), true), None);
        assert_eq!(
            offered(Some((&[Tool::QueryRecords], &deals_only)), false),
            Some((vec![Tool::QueryRecords], vec![Kind::Deal]))
        );
        assert_eq!(offered(Some((&all, &off)), true), None);
    }

    #[test]
    fn usage_adds_up_and_steps_end() {
        let mut total = Usage { prompt_tokens: 10, completion_tokens: 2, estimated: false };
        add_usage(&mut total, &Usage { prompt_tokens: 30, completion_tokens: 5, estimated: true });
        assert_eq!((total.prompt_tokens, total.completion_tokens, total.estimated), (40, 7, true));
        assert!(!is_final_step(1, 4));
        assert!(is_final_step(4, 4));
        assert!(is_final_step(1, 0));
        assert!(is_final_step(1, 1));
    }
}
