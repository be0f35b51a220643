//! The per-workspace Durable Object bound as `WORKSPACE`: one workspace's own SQLite database
//! (its chats, messages, knowledge and full-text index, agents, keys, insights, usage and audit
//! log), named by the workspace id. A thin runner: it applies its schema migrations and runs
//! the statements the Worker sends (`domain::data_plane::Command`), each batch in one
//! transaction. It never calls the LLM (a pending `fetch` would keep it in memory and billed).
//!
//! An object has no database until the registry vouches for its workspace (`init`), so a
//! made-up key locator reaches an object that answers 404 and writes nothing.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Array, Function, Reflect, JSON};
use serde_json::{json, Value};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State, Storage};

use crate::domain::data_plane::{self, Command, Init, ObjectState, Statement, BOOKKEEPING_SQL};

#[durable_object]
pub struct Workspace {
    state: State,
    /// What this instance knows of its database (`None`: not read yet).
    known: Cell<Option<ObjectState>>,
}

impl DurableObject for Workspace {
    fn new(state: State, _env: Env) -> Self {
        // Pending migrations run before the object serves anything, inside
        // blockConcurrencyWhile: a failure there resets the object rather than letting it
        // serve an old schema. An object without a database has nothing to migrate.
        let storage = state.storage();
        drop(state.block_concurrency_while(async move { upgrade(&storage).map_err(worker::Error::from) }));
        Self { state, known: Cell::new(None) }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let command: Command = req.json().await?;
        let storage = self.state.storage();
        let known = match self.known.get() {
            Some(state) => state,
            None => read_state(&storage),
        };
        self.known.set(Some(known));
        // Migrations also run here when one is pending (one small read per request): an
        // object's schema can be older than its code only if it changed underneath the running
        // instance, and this is also how a test reaches the upgrade locally, where an object
        // cannot be restarted on demand.
        if known != ObjectState::Absent {
            if let Err(err) = upgrade(&storage) {
                return Response::error(format!("migration: {err:?}"), 500);
            }
        }
        let outcome = match (command, known) {
            (Command::Batch { statements, init }, ObjectState::Absent) => match init {
                Some(init) => create(&storage, &init, ObjectState::Live).and_then(|()| {
                    self.known.set(Some(ObjectState::Live));
                    batch(&storage, statements)
                }),
                None => return refuse(data_plane::ABSENT),
            },
            (Command::Batch { statements, .. }, ObjectState::Live) => batch(&storage, statements),
            (Command::Batch { .. }, ObjectState::Moving) => return refuse(data_plane::MOVING),
            (Command::MoveBegin { init }, ObjectState::Absent) => {
                create(&storage, &init, ObjectState::Moving).map(|()| {
                    self.known.set(Some(ObjectState::Moving));
                    "[]".to_owned()
                })
            }
            (Command::MoveBegin { .. }, ObjectState::Moving) => Ok("[]".to_owned()),
            (Command::MoveRows { statements }, ObjectState::Moving) => batch(&storage, statements),
            (Command::Count { statements }, ObjectState::Moving | ObjectState::Live) => batch(&storage, statements),
            (Command::MoveFinish, ObjectState::Moving) => set_state(&storage, ObjectState::Live).map(|()| {
                self.known.set(Some(ObjectState::Live));
                "[]".to_owned()
            }),
            (Command::Destroy, _) => {
                storage.delete_all().await?;
                self.known.set(Some(ObjectState::Absent));
                return Response::from_json(&json!({ "state": ObjectState::Absent }));
            }
            (Command::Status, state) => {
                let applied =
                    if state == ObjectState::Absent { Vec::new() } else { applied(&storage).unwrap_or_default() };
                return Response::from_json(&json!({ "state": state, "migrations": applied }));
            }
            (Command::MoveBegin { .. } | Command::MoveRows { .. } | Command::MoveFinish, ObjectState::Live) => {
                return Response::error("already live", 409)
            }
            (_, ObjectState::Absent) => return refuse(data_plane::ABSENT),
        };
        match outcome {
            Ok(body) => {
                let mut resp = Response::ok(body)?;
                resp.headers_mut().set("Content-Type", "application/json")?;
                Ok(resp)
            }
            // The statement's error, for the Worker's log (never shown to a caller).
            Err(err) => Response::error(format!("{err:?}"), 500),
        }
    }
}

fn refuse(status: u16) -> Result<Response> {
    Response::error("", status)
}

/// `sql.exec` of the object's storage, called through JavaScript for the raw cursor (rows
/// serialised once, `rowsWritten`).
struct Sql {
    this: JsValue,
    exec: Function,
}

impl Sql {
    fn of(storage: &Storage) -> std::result::Result<Self, JsValue> {
        let this: JsValue = storage.sql().as_ref().clone();
        let exec = Reflect::get(&this, &JsValue::from_str("exec"))?.dyn_into::<Function>()?;
        Ok(Self { this, exec })
    }

    /// Runs one statement: its rows as a JSON array, and the rows it wrote.
    fn run(&self, sql: &str, params: &[Value]) -> std::result::Result<(String, u64), JsValue> {
        let args = Array::new();
        args.push(&JsValue::from_str(sql));
        for p in params {
            args.push(&match p {
                Value::String(s) => JsValue::from_str(s),
                Value::Number(n) => JsValue::from_f64(n.as_f64().unwrap_or_default()),
                Value::Bool(b) => JsValue::from_f64(if *b { 1.0 } else { 0.0 }),
                _ => JsValue::NULL,
            });
        }
        let cursor = self.exec.apply(&self.this, &args)?;
        let to_array = Reflect::get(&cursor, &JsValue::from_str("toArray"))?.dyn_into::<Function>()?;
        let rows = JSON::stringify(&to_array.call0(&cursor)?)?.as_string().unwrap_or_else(|| "[]".into());
        let written = Reflect::get(&cursor, &JsValue::from_str("rowsWritten"))?.as_f64().unwrap_or(0.0);
        Ok((rows, written as u64))
    }

    fn rows(&self, sql: &str, params: &[Value]) -> std::result::Result<Vec<Value>, JsValue> {
        let (rows, _) = self.run(sql, params)?;
        serde_json::from_str(&rows).map_err(|e| JsValue::from_str(&e.to_string()))
    }
}

/// Runs `f` in `storage.transactionSync`: everything it writes commits together, or not at all
/// when it fails. (`worker` binds only the asynchronous `transaction`.)
fn transaction<T: 'static>(
    storage: &Storage,
    f: impl FnOnce(&Sql) -> std::result::Result<T, JsValue> + 'static,
) -> std::result::Result<T, JsValue> {
    let sql = Sql::of(storage)?;
    let raw: &JsValue = storage.as_raw().as_ref();
    let sync = Reflect::get(raw, &JsValue::from_str("transactionSync"))?.dyn_into::<Function>()?;
    let out: Rc<RefCell<Option<T>>> = Rc::new(RefCell::new(None));
    let slot = out.clone();
    let body = Closure::once(move || -> std::result::Result<JsValue, JsValue> {
        *slot.borrow_mut() = Some(f(&sql)?);
        Ok(JsValue::UNDEFINED)
    });
    sync.call1(raw, body.as_ref().unchecked_ref())?;
    let value = out.borrow_mut().take();
    value.ok_or_else(|| JsValue::from_str("transaction did not run"))
}

/// The statements of one batch, in one transaction: `[{"rows": [...], "changes": n}, ...]`.
fn batch(storage: &Storage, statements: Vec<Statement>) -> std::result::Result<String, JsValue> {
    transaction(storage, move |sql| {
        let mut out = String::from("[");
        for (i, s) in statements.iter().enumerate() {
            let (rows, written) = sql.run(&s.sql, &s.params)?;
            if i > 0 {
                out.push(',');
            }
            out.push_str(&format!("{{\"rows\":{rows},\"changes\":{written}}}"));
        }
        out.push(']');
        Ok(out)
    })
}

/// Whether the object has a database, and in which state.
fn read_state(storage: &Storage) -> ObjectState {
    let Ok(sql) = Sql::of(storage) else { return ObjectState::Absent };
    let exists = sql
        .rows("SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_meta'", &[])
        .is_ok_and(|rows| !rows.is_empty());
    if !exists {
        return ObjectState::Absent;
    }
    let state = sql.rows("SELECT value FROM _meta WHERE key = 'state'", &[]).ok().and_then(|rows| {
        rows.first().and_then(|r| r.get("value")).and_then(Value::as_str).map(ObjectState::from_stored)
    });
    state.unwrap_or(ObjectState::Absent)
}

fn applied(storage: &Storage) -> std::result::Result<Vec<u32>, JsValue> {
    let rows = Sql::of(storage)?.rows("SELECT id FROM _migrations ORDER BY id", &[])?;
    Ok(rows.iter().filter_map(|r| r.get("id").and_then(Value::as_u64)).filter_map(|n| u32::try_from(n).ok()).collect())
}

/// Applies the migrations this object has not applied yet, in one transaction.
fn migrate(sql: &Sql, applied: &[u32]) -> std::result::Result<(), JsValue> {
    let now = worker::Date::now().as_millis() as f64;
    for m in data_plane::pending(applied) {
        sql.run(m.sql, &[])?;
        sql.run(
            "INSERT INTO _migrations (id, name, applied_at) VALUES (?1, ?2, ?3)",
            &[Value::from(m.id), Value::from(m.name), Value::from(now)],
        )?;
    }
    Ok(())
}

/// At start: the pending migrations of an object that has a database.
fn upgrade(storage: &Storage) -> std::result::Result<(), JsValue> {
    if read_state(storage) == ObjectState::Absent {
        return Ok(());
    }
    let done = applied(storage)?;
    if data_plane::pending(&done).is_empty() {
        return Ok(());
    }
    transaction(storage, move |sql| migrate(sql, &done))
}

/// Creates the database of a workspace the registry vouches for.
fn create(storage: &Storage, init: &Init, state: ObjectState) -> std::result::Result<(), JsValue> {
    let init = init.clone();
    transaction(storage, move |sql| {
        sql.run(BOOKKEEPING_SQL, &[])?;
        migrate(sql, &[])?;
        sql.run(
            "INSERT OR IGNORE INTO workspaces (id, name, created_at) VALUES (?1, ?2, ?3)",
            &[Value::from(init.id.as_str()), Value::from(init.name.as_str()), Value::from(init.created_at)],
        )?;
        sql.run("INSERT OR REPLACE INTO _meta (key, value) VALUES ('state', ?1)", &[Value::from(state.stored())])?;
        Ok(())
    })
}

fn set_state(storage: &Storage, state: ObjectState) -> std::result::Result<(), JsValue> {
    transaction(storage, move |sql| {
        sql.run("INSERT OR REPLACE INTO _meta (key, value) VALUES ('state', ?1)", &[Value::from(state.stored())])
            .map(|_| ())
    })
}
