//! Writing a sample back as an exposition line.

use crate::line::Sample;
use std::fmt;

impl fmt::Display for Sample<'_> {
    /// `name{label="value",...} value [timestamp]`, label values escaped; floats are written
    /// so that they parse back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)?;
        if !self.labels.is_empty() {
            f.write_str("{")?;
            for (i, (key, value)) in self.labels.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{key}=\"")?;
                for c in value.chars() {
                    match c {
                        '\\' => f.write_str("\\\\")?,
                        '"' => f.write_str("\\\"")?,
                        '\n' => f.write_str("\\n")?,
                        c => write!(f, "{c}")?,
                    }
                }
                f.write_str("\"")?;
            }
            f.write_str("}")?;
        }
        f.write_str(" ")?;
        write_float(f, self.value)?;
        if let Some(t) = self.timestamp {
            f.write_str(" ")?;
            write_float(f, t)?;
        }
        Ok(())
    }
}

fn write_float(f: &mut fmt::Formatter<'_>, v: f64) -> fmt::Result {
    if v.is_nan() {
        f.write_str("NaN")
    } else if v.is_infinite() {
        f.write_str(if v > 0.0 { "+Inf" } else { "-Inf" })
    } else {
        // Debug prints the shortest string that round-trips, with an exponent when long.
        write!(f, "{v:?}")
    }
}
