//! Error answers: every one is a JSON object `{"error": "...", ...}` with the
//! status that says what happened.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{Map, Value};

use adsync::{InputError, PullError, PushError, RunError, WorkerError};

/// An error answer of the control API: a status and a JSON body whose
/// `error` field says what went wrong (never a secret). Bad input also says
/// where (`origin`, `line`, `column`, `path`).
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The JSON object answered; it always has an `error` string.
    pub body: Map<String, Value>,
}

impl ApiError {
    /// An error with `status` and message `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        let mut body = Map::new();
        body.insert("error".into(), Value::String(message.into()));
        ApiError { status, body }
    }

    /// 400: bad input, nothing written.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 409: the request conflicts with what the store holds.
    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, message)
    }

    /// 500: the daemon failed (the store), not the request.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// Adds a field to the body.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.body.insert(key.to_string(), value.into());
        self
    }

    /// The `error` text.
    pub fn message(&self) -> &str {
        self.body
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(Value::Object(self.body))).into_response()
    }
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> Self {
        let message = e.to_string();
        let error = ApiError::bad_request(message);
        match e {
            InputError::Syntax {
                origin,
                line,
                column,
                json_path,
                message,
            } => error
                .with("origin", origin)
                .with("line", line)
                .with("column", column)
                .with("path", json_path)
                .with("message", message),
            InputError::Invalid {
                origin,
                json_path,
                message,
            } => error
                .with("origin", origin)
                .with("path", json_path)
                .with("message", message),
            InputError::Read { .. } => error,
        }
    }
}

impl From<RunError> for ApiError {
    fn from(e: RunError) -> Self {
        let message = e.to_string();
        match e {
            RunError::UnknownSync(_) => ApiError::not_found(message),
            RunError::NotCancellable { .. } | RunError::Busy(_) => ApiError::conflict(message),
            RunError::WrongKind { .. } => ApiError::conflict(message),
            RunError::Transition { .. } => ApiError::conflict(message),
            RunError::Stopped(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message),
            _ => ApiError::internal(message),
        }
    }
}

impl From<PushError> for ApiError {
    fn from(e: PushError) -> Self {
        match e {
            PushError::Run(e) => e.into(),
            // Refused before anything started: the store holds other work
            // for these campaigns.
            PushError::Unfinished { .. }
            | PushError::NeedsAttention { .. }
            | PushError::OwnedByAnotherSet { .. } => ApiError::conflict(e.to_string()),
            // The platform could not be read for a plan: not the caller's fault.
            PushError::Platform { .. } => ApiError::new(StatusCode::BAD_GATEWAY, e.to_string()),
        }
    }
}

impl From<PullError> for ApiError {
    fn from(e: PullError) -> Self {
        match e {
            PullError::Run(e) => e.into(),
            PullError::InvalidProfile(_) => ApiError::bad_request(e.to_string()),
            PullError::Snapshot(_) => ApiError::internal(e.to_string()),
        }
    }
}

impl From<WorkerError> for ApiError {
    fn from(e: WorkerError) -> Self {
        match e {
            WorkerError::Push(e) => e.into(),
            WorkerError::Pull(e) => e.into(),
            WorkerError::Run(e) => e.into(),
            WorkerError::UnknownPlatform { .. } | WorkerError::Schedule(_) => {
                ApiError::bad_request(e.to_string())
            }
            WorkerError::NotServed { .. } => ApiError::conflict(e.to_string()),
            WorkerError::AlreadyRunning | WorkerError::Stopped => ApiError::internal(e.to_string()),
        }
    }
}
