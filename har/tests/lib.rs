//! Integration tests of `tapedeck-har`: a browser fixture imported to exact exchanges, malformed
//! input, round trips (hand-picked and generated), and exports checked against a HAR 1.2 JSON
//! Schema.

mod deviations;
mod fixture;
mod malformed;
mod mutation;
mod property;
mod round_trip;
mod schema;
mod support;
