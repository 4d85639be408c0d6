use sea_orm::{DbErr, SqlErr};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("could not create the data folder")]
    DataDir(#[source] std::io::Error),
    #[error("could not connect to the database")]
    Connect(#[source] DbErr),
    #[error("database migration failed")]
    Migrate(#[source] DbErr),
    #[error("database operation failed")]
    Db(#[from] DbErr),
    #[error("{what} already exists")]
    Conflict { what: &'static str },
    #[error("{what} not found")]
    NotFound { what: &'static str },
    #[error("stored row is not valid: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether retrying later may succeed (lost connection, lock timeout), as opposed to a fault in the
    /// data itself. Workers use it to choose between a retry and the dead-letter queue.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Connect(_) => true,
            StoreError::Db(e) | StoreError::Migrate(e) => match e.sql_err() {
                // Rows it refers to do not exist: no retry will create them.
                Some(SqlErr::ForeignKeyConstraintViolation(_)) => false,
                // Two workers inserting the same new visit at once: the retry finds the other's row.
                Some(SqlErr::UniqueConstraintViolation(_)) => true,
                _ => matches!(e, DbErr::Conn(_) | DbErr::ConnectionAcquire(_) | DbErr::Exec(_) | DbErr::Query(_)),
            },
            _ => false,
        }
    }
}

/// Whether an insert that does nothing on conflict inserted its row (sea-orm reports "nothing inserted" as
/// an error; here it is the answer `false`).
pub(crate) fn inserted(result: Result<u64, sea_orm::DbErr>) -> Result<bool, StoreError> {
    match result {
        Ok(n) => Ok(n > 0),
        Err(sea_orm::DbErr::RecordNotInserted) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
