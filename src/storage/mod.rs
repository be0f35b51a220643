//! Where storage starts: the control plane (D1: the workspace registry, admins, the index of
//! keys of the first format, moves), each workspace's own database (its `Workspace` Durable
//! Object, `src/workspace.rs`; or D1 for a workspace not moved yet), the KV last-used index and
//! the rate-limiter Durable Object client. Each module owns the SQL of one resource; handlers
//! never write SQL.
//!
//! A [`Db`] runs the same SQL on either kind of database: statements, `first`/`all`/`run`, and
//! batches that are one transaction. So the modules below do not know which one they talk to.

pub mod agents;
pub mod audit;
pub mod chats;
pub mod insights;
pub mod keys;
pub mod knowledge;
pub mod last_used;
pub mod lifecycle;
pub mod limiter;
pub mod moves;
pub mod usage;
pub mod workspaces;

use std::rc::Rc;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use wasm_bindgen::{JsCast, JsValue};
use worker::{D1Database, D1PreparedStatement, D1Result, Env, Method, ObjectNamespace, Request, RequestInit, Stub};

use crate::domain::data_plane::{self, Command, Init, Statement};
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::placement::{Plane, StubOptions, MOVING_RETRY_AFTER_SECONDS};

/// A database: the shared D1, or one workspace's own.
#[derive(Clone)]
pub struct Db(Rc<Backend>);

enum Backend {
    /// `guard`: the workspace whose rows these are, while it is still on D1. Every call then
    /// first checks, in the same transaction, that the workspace has not started moving, so
    /// no write can land in D1 after its move has begun (see [`guarded`]).
    D1 { db: D1Database, guard: Option<String> },
    /// `init`: sent when the registry vouches for the workspace (its database may be created);
    /// `absent`: the error when the object has no database (a key of a deleted workspace).
    Object { stub: Stub, init: Option<Init>, absent: ApiError, redirect: Option<Redirect> },
}

/// A key that carries its workspace but may have been restored into another one: when the
/// workspace it names has no database (deleted), the key index says where the key went.
struct Redirect {
    env: Env,
    key_hash: String,
}

/// A bound parameter: text, an integer (far below 2^53: epoch milliseconds, counts), a real,
/// or null.
pub type Param = Value;

/// A statement and its parameters, for the database it was prepared on.
pub struct Stmt {
    db: Db,
    sql: String,
    params: Vec<Param>,
}

/// The outcome of one statement: its rows and whether it changed any. An object's rows stay
/// JavaScript values, read by the same deserializer as D1's (one copy of each row type's code).
pub enum Res {
    D1(D1Result),
    Object { rows: js_sys::Array, changes: u64 },
}

/// The control plane (the shared D1).
pub fn control(env: &Env) -> ApiResult<Db> {
    let db = env.d1("DB").map_err(|e| ApiError::internal(format!("D1 binding: {e}")))?;
    Ok(Db(Rc::new(Backend::D1 { db, guard: None })))
}

/// Where a workspace's data is, as the registry (or a credential) says.
#[derive(Debug, Clone)]
pub struct Place {
    pub workspace_id: String,
    pub plane: Plane,
    pub stub: StubOptions,
    /// When the registry vouches for the workspace: its object may create its database.
    pub init: Option<Init>,
}

/// The database of a workspace. `absent` is the error when its object turns out to hold no
/// database. A workspace being moved is 503 with `Retry-After`.
pub fn open(env: &Env, place: &Place, absent: ApiError) -> ApiResult<Db> {
    open_with(env, place, absent, None)
}

/// [`open`] for the workspace a key of the second format names: should that workspace have
/// no database (deleted after its backup was restored elsewhere), the key index is asked
/// where the key `key_hash` lives now. Nothing more is asked on any other path.
pub fn open_located(env: &Env, place: &Place, absent: ApiError, key_hash: &str) -> ApiResult<Db> {
    open_with(env, place, absent, Some(Redirect { env: env.clone(), key_hash: key_hash.to_owned() }))
}

fn open_with(env: &Env, place: &Place, absent: ApiError, redirect: Option<Redirect>) -> ApiResult<Db> {
    match place.plane {
        Plane::Moving => Err(ApiError::Moving { retry_after_seconds: MOVING_RETRY_AFTER_SECONDS }),
        Plane::D1 => {
            let db = env.d1("DB").map_err(|e| ApiError::internal(format!("D1 binding: {e}")))?;
            Ok(Db(Rc::new(Backend::D1 { db, guard: Some(place.workspace_id.clone()) })))
        }
        Plane::Object => {
            let stub = stub(env, &place.workspace_id, place.stub)?;
            Ok(Db(Rc::new(Backend::Object { stub, init: place.init.clone(), absent, redirect })))
        }
    }
}

/// The stub of a workspace's object: named by the workspace id, in its jurisdiction, created
/// near its location hint. `worker` has no binding for jurisdictions, so that one call goes
/// through the namespace's JavaScript API.
pub fn stub(env: &Env, workspace_id: &str, options: StubOptions) -> ApiResult<Stub> {
    let fail = |e: worker::Error| ApiError::internal(format!("workspace object: {e}"));
    let namespace = env.durable_object("WORKSPACE").map_err(fail)?;
    let namespace = match options.jurisdiction {
        None => namespace,
        Some(j) => {
            let raw: &JsValue = namespace.as_ref();
            let jurisdiction = js_sys::Reflect::get(raw, &JsValue::from_str("jurisdiction"))
                .ok()
                .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
                .ok_or_else(|| ApiError::internal("workspace object: no jurisdiction() on the namespace"))?;
            match jurisdiction.call1(raw, &JsValue::from_str(j)) {
                Ok(scoped) => ObjectNamespace::unchecked_from_js(scoped),
                // The local runtime (workerd) has no jurisdictions and says so; everything is
                // local there anyway. Anywhere else the error stands.
                Err(e) if format!("{e:?}").contains("not implemented in workerd") => namespace,
                Err(e) => return Err(ApiError::internal(format!("workspace object: jurisdiction {j}: {e:?}"))),
            }
        }
    };
    match options.location_hint {
        Some(hint) => namespace.get_by_name_with_location_hint(workspace_id, hint).map_err(fail),
        None => namespace.get_by_name(workspace_id).map_err(fail),
    }
}

impl Db {
    /// Whether this is a workspace's own database (for `Server-Timing`).
    pub fn is_object(&self) -> bool {
        matches!(*self.0, Backend::Object { .. })
    }
}

/// Text parameter.
pub fn text(s: &str) -> Param {
    Value::String(s.to_owned())
}

pub fn int(n: i64) -> Param {
    Value::from(n)
}

pub fn real(f: f64) -> Param {
    Value::from(f)
}

pub fn opt_text(s: Option<&str>) -> Param {
    s.map_or(Value::Null, text)
}

pub fn opt_int(n: Option<i64>) -> Param {
    n.map_or(Value::Null, int)
}

pub fn stmt(db: &Db, sql: &str, params: &[Param]) -> ApiResult<Stmt> {
    Ok(Stmt { db: db.clone(), sql: sql.to_owned(), params: params.to_vec() })
}

pub fn d1_error(err: worker::Error) -> ApiError {
    ApiError::internal(format!("D1: {err}"))
}

/// The first row, if any.
pub async fn first<T: DeserializeOwned>(stmt: Stmt) -> ApiResult<Option<T>> {
    let db = stmt.db.clone();
    let results = batch(&db, vec![stmt]).await?;
    match results.first() {
        Some(Res::D1(r)) => Ok(r.results::<T>().map_err(d1_error)?.into_iter().next()),
        Some(res @ Res::Object { .. }) => Ok(rows::<T>(res)?.into_iter().next()),
        None => Ok(None),
    }
}

pub async fn all<T: DeserializeOwned>(stmt: Stmt) -> ApiResult<Vec<T>> {
    rows(&run(stmt).await?)
}

pub async fn run(stmt: Stmt) -> ApiResult<Res> {
    let db = stmt.db.clone();
    batch(&db, vec![stmt])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal("a batch of one returned nothing"))
}

/// Rows of one result. (A failed statement rejects the whole call, so a result here succeeded.)
pub fn rows<T: DeserializeOwned>(result: &Res) -> ApiResult<Vec<T>> {
    match result {
        Res::D1(r) => r.results::<T>().map_err(d1_error),
        Res::Object { rows, .. } => rows
            .iter()
            .map(|row| {
                serde_wasm_bindgen::from_value::<T>(row)
                    .map_err(|e| ApiError::internal(format!("workspace object row: {e}")))
            })
            .collect(),
    }
}

/// How many rows a write changed (on an object: rows written, which is 0 exactly when nothing
/// changed; every caller asks only that).
pub fn changes(result: &Res) -> ApiResult<u64> {
    match result {
        Res::D1(r) => {
            let meta = r.meta().map_err(d1_error)?;
            Ok(meta.and_then(|m| m.changes).unwrap_or(0) as u64)
        }
        Res::Object { changes, .. } => Ok(*changes),
    }
}

/// Statements run as one transaction: one round trip to the database.
pub async fn batch(db: &Db, statements: Vec<Stmt>) -> ApiResult<Vec<Res>> {
    match &*db.0 {
        Backend::D1 { db, guard } => d1_batch(db, guard.as_deref(), statements).await,
        Backend::Object { stub, init, absent, redirect } => {
            let statements = statements.into_iter().map(|s| Statement { sql: s.sql, params: s.params }).collect();
            let command = Command::Batch { statements, init: init.clone() };
            let text = match (object_text(stub, &command, absent).await, redirect) {
                (Err(e), Some(r)) if e == *absent => match restored(r).await? {
                    Some((stub, init)) => {
                        let Command::Batch { statements, .. } = command else { return Err(e) };
                        object_text(&stub, &Command::Batch { statements, init: Some(init) }, absent).await?
                    }
                    None => return Err(e),
                },
                (result, _) => result?,
            };
            let parsed =
                js_sys::JSON::parse(&text).map_err(|e| ApiError::internal(format!("workspace object reply: {e:?}")))?;
            let results: js_sys::Array =
                parsed.dyn_into().map_err(|_| ApiError::internal("workspace object reply: not a list"))?;
            let field =
                |r: &JsValue, name: &str| js_sys::Reflect::get(r, &JsValue::from_str(name)).unwrap_or(JsValue::NULL);
            Ok(results
                .iter()
                .map(|r| Res::Object {
                    rows: field(&r, "rows").dyn_into().unwrap_or_default(),
                    changes: field(&r, "changes").as_f64().unwrap_or(0.0) as u64,
                })
                .collect())
        }
    }
}

/// Where the index says a restored key lives now, if that is another workspace's own object.
async fn restored(r: &Redirect) -> ApiResult<Option<(Stub, Init)>> {
    let control = control(&r.env)?;
    // Boxed: this lookup is itself a batch (on D1), and a future cannot contain itself.
    let Some(ws) = Box::pin(workspaces::by_key_hash(&control, &r.key_hash)).await? else { return Ok(None) };
    if ws.plane() != Plane::Object {
        return Ok(None);
    }
    Ok(Some((stub(&r.env, &ws.id, ws.placement().stub_options())?, ws.init())))
}

/// The guard that stops a D1 transaction of a workspace once its move has begun: `json()`
/// of a non-JSON string raises an error, which rolls the whole batch back.
const GUARD_SQL: &str =
    "SELECT CASE WHEN data_plane = 'd1' THEN 1 ELSE json('moving') END AS ok FROM workspaces WHERE id = ?1";

async fn d1_batch(db: &D1Database, guard: Option<&str>, statements: Vec<Stmt>) -> ApiResult<Vec<Res>> {
    let mut prepared: Vec<D1PreparedStatement> = Vec::with_capacity(statements.len() + 1);
    if let Some(ws) = guard {
        prepared.push(db.prepare(GUARD_SQL).bind(&[JsValue::from_str(ws)]).map_err(d1_error)?);
    }
    for s in &statements {
        let params: Vec<JsValue> = s.params.iter().map(to_js).collect();
        prepared.push(db.prepare(&s.sql).bind(&params).map_err(d1_error)?);
    }
    match db.batch(prepared).await {
        Ok(results) => Ok(results.into_iter().skip(usize::from(guard.is_some())).map(Res::D1).collect()),
        Err(err) if guard.is_some() && err.to_string().contains("malformed JSON") => {
            Err(ApiError::Moving { retry_after_seconds: MOVING_RETRY_AFTER_SECONDS })
        }
        Err(err) => Err(d1_error(err)),
    }
}

/// D1 takes JS numbers, never BigInt.
fn to_js(p: &Param) -> JsValue {
    match p {
        Value::String(s) => JsValue::from_str(s),
        Value::Number(n) => JsValue::from_f64(n.as_f64().unwrap_or_default()),
        Value::Bool(b) => JsValue::from_f64(if *b { 1.0 } else { 0.0 }),
        _ => JsValue::NULL,
    }
}

#[derive(Deserialize)]
/// A statement's rows, for the move's own reads (its counts).
pub(crate) struct ObjectResult {
    pub rows: Vec<Value>,
}

/// One command to a workspace's object and its JSON reply.
pub(crate) async fn object_call<T: DeserializeOwned>(
    stub: &Stub,
    command: &Command,
    absent: &ApiError,
) -> ApiResult<T> {
    let text = object_text(stub, command, absent).await?;
    serde_json::from_str(&text).map_err(|e| ApiError::internal(format!("workspace object reply: {e}")))
}

/// One command to a workspace's object and its reply's text.
async fn object_text(stub: &Stub, command: &Command, absent: &ApiError) -> ApiResult<String> {
    let fail = |e: worker::Error| ApiError::internal(format!("workspace object: {e}"));
    let body = serde_json::to_string(command).map_err(|e| ApiError::internal(format!("workspace object: {e}")))?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(body.into()));
    let req = Request::new_with_init("https://workspace/", &init).map_err(fail)?;
    let mut resp = stub.fetch_with_request(req).await.map_err(fail)?;
    match resp.status_code() {
        200 => resp.text().await.map_err(|e| ApiError::internal(format!("workspace object reply: {e}"))),
        data_plane::ABSENT => Err(absent.clone()),
        data_plane::MOVING => Err(ApiError::Moving { retry_after_seconds: MOVING_RETRY_AFTER_SECONDS }),
        status => {
            let detail = resp.text().await.unwrap_or_default();
            Err(ApiError::internal(format!("workspace object answered {status}: {detail}")))
        }
    }
}

/// Deletes everything a workspace's object stores (nothing when it has no database).
pub async fn destroy(stub: &Stub) -> ApiResult<()> {
    let _: Value = object_call(stub, &Command::Destroy, &ApiError::internal("absent")).await?;
    Ok(())
}
