//! What replay does to recorded values, shared by the generator and the responder so that both
//! read a token rule the same way discovery wrote it.
//!
//! - [`trace`]: the traceparent convention that tells the responder which recorded inbound
//!   request (copy, iteration) a live call belongs to.
//! - [`shift`]: timestamps moved to replay time in their own spelling.
//! - [`jwt`]: recorded JWTs re-signed with a configured key, time claims moved.
//! - [`edit`]: the value at a rule's [`Location`](crate::tokens::Location) in a live message,
//!   read and rewritten in place.

pub mod edit;
pub mod jwt;
pub mod shift;
pub mod trace;
