//! Calls to services outside Cloudflare: the LLM, over `fetch`.

pub mod llm;
