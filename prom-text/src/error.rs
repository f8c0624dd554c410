//! The crate's error type.

/// Why one line is not valid exposition text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// The line does not start with a valid metric name.
    #[error("missing or invalid metric name")]
    Name,
    /// A label set is malformed (name, `=`, quoting, separator or closing brace).
    #[error("malformed label set")]
    Labels,
    /// A label value uses an escape other than `\\`, `\"` or `\n`.
    #[error("invalid escape in a label value")]
    Escape,
    /// The value is missing or not a float, `NaN`, `+Inf` or `-Inf`.
    #[error("missing or invalid sample value")]
    Value,
    /// The timestamp is not a number.
    #[error("invalid timestamp")]
    Timestamp,
    /// Something follows the value and timestamp.
    #[error("unexpected text after the value")]
    Trailing,
    /// A `# TYPE` line names an unknown type or lacks one.
    #[error("invalid # TYPE line")]
    Type,
}

/// An error in a whole exposition page, naming the 1-based line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A line is malformed.
    #[error("line {line}: {kind}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        kind: LineError,
    },
    /// A family's `# TYPE` (or `# HELP`) is given twice, or its `# TYPE` after its samples.
    #[error("line {line}: {what} for metric family {family}")]
    Family {
        /// 1-based line number.
        line: usize,
        /// The family's name.
        family: String,
        /// What is out of place.
        what: &'static str,
    },
}
