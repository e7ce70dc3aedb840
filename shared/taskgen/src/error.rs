//! What can go wrong when generating tasks.

use std::path::PathBuf;

/// A task generation failure.
#[derive(Debug, thiserror::Error)]
pub enum TaskgenError {
    /// No family has this name.
    #[error("unknown task family {name:?}; known families: {known}")]
    UnknownFamily {
        /// The name asked for.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },
    /// The family has fewer distinct rows than were asked for.
    #[error("task family {family} can make only {available} distinct rows, not {requested}")]
    TooManyRows {
        /// The family's name.
        family: &'static str,
        /// Rows asked for.
        requested: usize,
        /// The most it can make (for large families: how many it found before giving up).
        available: usize,
    },
    /// Writing a task folder failed.
    #[error("writing {}: {source}", path.display())]
    Io {
        /// The file or folder being written.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A task folder could not be read: a bad `task.toml` or invalid data.
    #[error("{}: {reason}", path.display())]
    TaskFile {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `task.toml` could not be encoded (never expected for the plain strings written).
    #[error("encoding task.toml: {0}")]
    Toml(#[from] toml::ser::Error),
}
