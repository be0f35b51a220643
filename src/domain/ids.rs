//! Resource ids: a type prefix and 22 base62 characters (about 131 random bits), so they are
//! opaque, URL-safe and unguessable, and a support engineer can tell a chat id from a message
//! id at a glance.

use super::base62;
use super::error::ApiError;

const RANDOM_LEN: usize = 22;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Workspace,
    Admin,
    ApiKey,
    Agent,
    Chat,
    Message,
    Audit,
    Record,
    Insight,
}

impl IdKind {
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Workspace => "ws_",
            Self::Admin => "adm_",
            Self::ApiKey => "key_",
            Self::Agent => "agent_",
            Self::Chat => "chat_",
            Self::Message => "msg_",
            Self::Audit => "aud_",
            Self::Record => "rec_",
            Self::Insight => "ins_",
        }
    }
}

/// A fresh random id of the given kind.
///
/// # Errors
/// `Internal` when the platform gives no randomness.
pub fn new_id(kind: IdKind) -> Result<String, ApiError> {
    let random = base62::random(RANDOM_LEN).map_err(|e| ApiError::internal(format!("rng: {e}")))?;
    Ok(format!("{}{random}", kind.prefix()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_and_recognised() {
        let id = new_id(IdKind::Chat).unwrap();
        assert!(id.starts_with("chat_"));
        assert_eq!(id.len(), "chat_".len() + 22);
        assert!(base62::is_base62(&id["chat_".len()..]));
        assert_ne!(id, new_id(IdKind::Chat).unwrap());
    }
}
