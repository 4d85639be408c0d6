//! An error with its causes, for logs: a top-level error alone often says little ("database operation
//! failed" hides whether the pool timed out or a statement was cancelled).

use std::fmt;

/// Writes an error and each of its sources on one line, joined by ": " ("database operation failed: pool
/// timed out while waiting for an open connection"). Use it as a log field, `error = %Chain(&e)`.
///
/// The sources are library messages (sqlx, lettre, lapin, reqwest): PostgreSQL's message names the
/// constraint, not the row's values (those are in its `detail`, which is never printed).
#[derive(Clone, Copy)]
pub struct Chain<'a>(pub &'a dyn std::error::Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = self.0.to_string();
        let mut source = self.0.source();
        while let Some(s) = source {
            // Some errors (sqlx's, sea-orm's) already print their source in their own message: once is enough.
            let text = s.to_string();
            if !out.contains(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            source = s.source();
        }
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::Chain;

    #[derive(Debug, thiserror::Error)]
    #[error("database operation failed")]
    struct Outer(#[source] Middle);
    #[derive(Debug, thiserror::Error)]
    #[error("connection acquire")]
    struct Middle(#[source] Inner);
    #[derive(Debug, thiserror::Error)]
    #[error("pool timed out while waiting for an open connection")]
    struct Inner;
    #[derive(Debug, thiserror::Error)]
    #[error("Query Error: {0}")]
    struct Echo(#[source] Inner);

    #[test]
    fn an_error_reads_with_every_cause_in_order() {
        assert_eq!(
            Chain(&Outer(Middle(Inner))).to_string(),
            "database operation failed: connection acquire: pool timed out while waiting for an open connection"
        );
        assert_eq!(Chain(&Inner).to_string(), "pool timed out while waiting for an open connection");
        // A message that already carries its cause does not get it twice.
        assert_eq!(Chain(&Echo(Inner)).to_string(), "Query Error: pool timed out while waiting for an open connection");
    }
}
