//! The tool step of an agent's turn: the model asked for data; each call is validated, run as
//! one workspace-scoped D1 statement (all of them concurrently) and answered with a tool
//! message. Whatever goes wrong (unknown tool, bad arguments, a failed query) becomes a result
//! that explains it, so the model can correct itself: a tool never fails the turn.

use serde_json::Value;

use crate::context::log_warn;
use crate::domain::agent::Trace;
use crate::domain::knowledge::{Kind, Source};
use crate::domain::llm::{ToolCall, Turn};
use crate::domain::sse::MAX_TOOL_CALLS;
use crate::domain::tools::{self, Call, Tool};
use crate::storage::{knowledge, Db};

/// What a turn offers the model: its tools, the kinds they read, and their definitions as sent.
pub struct Toolbox {
    pub tools: Vec<Tool>,
    pub kinds: Vec<Kind>,
    pub definitions: Value,
}

impl Toolbox {
    pub fn new(tools: Vec<Tool>, kinds: Vec<Kind>) -> Self {
        let definitions = tools::definitions(&tools, &kinds);
        Self { tools, kinds, definitions }
    }

    /// Whether one of its tools is called `name`.
    pub fn offers(&self, name: &str) -> bool {
        self.tools.iter().any(|t| t.as_str() == name)
    }
}

/// One executed call: the message for the model, what is kept of it, and the records it
/// returned (cited as sources).
pub struct Executed {
    pub message: Turn,
    pub trace: Trace,
    pub sources: Vec<Source>,
}

/// Runs the model's calls side by side, in the workspace `workspace_id` only. Calls past
/// [`MAX_TOOL_CALLS`] in one step are answered with an error instead of run: a model asking
/// for hundreds of queries at once is not asking for data.
pub async fn run(
    db: &Db,
    request_id: &str,
    workspace_id: &str,
    toolbox: &Toolbox,
    calls: &[ToolCall],
) -> Vec<Executed> {
    futures::future::join_all(calls.iter().enumerate().map(|(i, call)| async move {
        if i >= MAX_TOOL_CALLS {
            let why = format!("too many tool calls in one step; at most {MAX_TOOL_CALLS} run, call again for the rest");
            return refused(call, why);
        }
        run_one(db, request_id, workspace_id, toolbox, call).await
    }))
    .await
}

/// A call answered with an error for the model, and kept as such.
fn refused(call: &ToolCall, message: String) -> Executed {
    Executed {
        message: Turn::tool_result(&call.id, tools::render_error(&message).content),
        trace: Trace::new(call, 0, Some(message)),
        sources: Vec::new(),
    }
}

async fn run_one(db: &Db, request_id: &str, workspace_id: &str, toolbox: &Toolbox, call: &ToolCall) -> Executed {
    let fail = |message: String| refused(call, message);
    let parsed = match tools::validate(&call.function.name, &call.function.arguments, &toolbox.tools, &toolbox.kinds) {
        Ok(parsed) => parsed,
        Err(why) => return fail(why),
    };
    let rows = match &parsed {
        Call::Search(search) => knowledge::tool_search(db, workspace_id, search, &toolbox.kinds).await,
        Call::Query(query) => knowledge::tool_rows(db, &query.statement(workspace_id)).await,
        Call::Aggregate(aggregate) => knowledge::tool_rows(db, &aggregate.statement(workspace_id)).await,
    };
    let rows = match rows {
        Ok(rows) => rows,
        // The detail stays in our logs; the model learns only that the query failed.
        Err(err) => {
            log_warn(request_id, "tool_query_failed", err.log_detail());
            return fail("the query failed; try again, or with simpler arguments".into());
        }
    };
    let result = tools::render(&parsed, &rows);
    let sources = match parsed {
        Call::Aggregate(_) => Vec::new(),
        Call::Search(_) | Call::Query(_) => rows
            .iter()
            .take(result.result_count)
            .filter_map(|row| serde_json::from_value::<knowledge::Hit>(row.clone()).ok())
            .filter_map(|hit| hit.to_source())
            .collect(),
    };
    Executed {
        message: Turn::tool_result(&call.id, result.content),
        trace: Trace::new(call, result.result_count, None),
        sources,
    }
}
