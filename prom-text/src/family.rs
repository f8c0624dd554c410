//! Metric families: `# TYPE`/`# HELP` with their samples, and the strict whole-page check.

use crate::error::Error;
use crate::line::{Line, Sample, parse_any};
use std::borrow::Cow;
use std::collections::HashMap;

/// A family's declared type (`untyped` when no `# TYPE` line names it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// `counter`.
    Counter,
    /// `gauge`.
    Gauge,
    /// `histogram`.
    Histogram,
    /// OpenMetrics `gaugehistogram`.
    GaugeHistogram,
    /// `summary`.
    Summary,
    /// OpenMetrics `info`.
    Info,
    /// OpenMetrics `stateset`.
    StateSet,
    /// `untyped` (0.0.4) or `unknown` (OpenMetrics), or no `# TYPE` at all.
    Untyped,
}

impl MetricType {
    /// The type named by a `# TYPE` keyword, if it is one.
    pub fn from_keyword(word: &str) -> Option<Self> {
        Some(match word {
            "counter" => Self::Counter,
            "gauge" => Self::Gauge,
            "histogram" => Self::Histogram,
            "gaugehistogram" => Self::GaugeHistogram,
            "summary" => Self::Summary,
            "info" => Self::Info,
            "stateset" => Self::StateSet,
            "untyped" | "unknown" => Self::Untyped,
            _ => return None,
        })
    }

    /// The sample-name suffixes that belong to a family of this type.
    fn suffixes(self) -> &'static [&'static str] {
        match self {
            Self::Counter => &["_total", "_created"],
            Self::Histogram | Self::GaugeHistogram => {
                &["_bucket", "_sum", "_count", "_created", "_gsum", "_gcount"]
            }
            Self::Summary => &["_sum", "_count", "_created"],
            Self::Info => &["_info"],
            _ => &[],
        }
    }
}

/// One metric family: its name, type, help and samples in page order.
#[derive(Debug, Clone, PartialEq)]
pub struct Family<'a> {
    /// The family name (a histogram's samples add `_bucket`, `_sum`, `_count`).
    pub name: &'a str,
    /// Its declared type.
    pub kind: MetricType,
    /// Its `# HELP` text, if given.
    pub help: Option<Cow<'a, str>>,
    /// Its samples.
    pub samples: Vec<Sample<'a>>,
}

/// Parses a whole page strictly: every line well-formed, at most one `# TYPE` and one
/// `# HELP` per family, `# TYPE` before the family's samples. Families come in page order.
pub fn parse_strict(text: &str) -> Result<Vec<Family<'_>>, Error> {
    let mut families: Vec<Family<'_>> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let parsed = parse_any(raw).map_err(|kind| Error::Line { line, kind })?;
        let family_error = |family: &str, what| Error::Family {
            line,
            family: family.to_owned(),
            what,
        };
        match parsed {
            Line::Blank | Line::Comment => {}
            Line::Help { name, text } => {
                let f = entry(&mut families, &mut index, name);
                if f.help.is_some() {
                    return Err(family_error(name, "# HELP given twice"));
                }
                f.help = Some(text);
            }
            Line::Type { name, kind } => {
                let f = entry(&mut families, &mut index, name);
                if f.kind != MetricType::Untyped {
                    return Err(family_error(name, "# TYPE given twice"));
                }
                if !f.samples.is_empty() {
                    return Err(family_error(name, "# TYPE after samples"));
                }
                f.kind = kind;
            }
            Line::Sample(sample) => {
                let owner = owner(&families, &index, sample.name);
                entry(&mut families, &mut index, owner).samples.push(sample);
            }
        }
    }
    Ok(families)
}

/// The family a sample name belongs to: a typed family it extends by one of its type's
/// suffixes, else the name itself.
fn owner<'a>(families: &[Family<'a>], index: &HashMap<&str, usize>, name: &'a str) -> &'a str {
    if let Some(&i) = index.get(name)
        && families[i].kind != MetricType::Untyped
    {
        return name;
    }
    for (i, _) in name.match_indices('_') {
        let (base, suffix) = name.split_at(i);
        if let Some(&f) = index.get(base)
            && families[f].kind.suffixes().contains(&suffix)
        {
            return base;
        }
    }
    name
}

fn entry<'a, 'f>(
    families: &'f mut Vec<Family<'a>>,
    index: &mut HashMap<&'a str, usize>,
    name: &'a str,
) -> &'f mut Family<'a> {
    let i = *index.entry(name).or_insert_with(|| {
        families.push(Family {
            name,
            kind: MetricType::Untyped,
            help: None,
            samples: Vec::new(),
        });
        families.len() - 1
    });
    &mut families[i]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LineError;

    const PAGE: &str = "# HELP h Latency.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\n\
        h_bucket{le=\"+Inf\"} 3\nh_sum 1.5\nh_count 3\n# TYPE c counter\nc_total 7\n\
        c_created 1.7e9\nloose 1\n";

    #[test]
    fn groups_samples_by_family() {
        let fams = parse_strict(PAGE).unwrap();
        let names: Vec<_> = fams
            .iter()
            .map(|f| (f.name, f.kind, f.samples.len()))
            .collect();
        assert_eq!(
            names,
            [
                ("h", MetricType::Histogram, 4),
                ("c", MetricType::Counter, 2),
                ("loose", MetricType::Untyped, 1)
            ]
        );
        assert_eq!(fams[0].help.as_deref(), Some("Latency."));
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse_strict("a 1\nb{x=1} 2\n").unwrap_err();
        assert_eq!(
            e,
            Error::Line {
                line: 2,
                kind: LineError::Labels
            }
        );
        assert_eq!(e.to_string(), "line 2: malformed label set");
        let e = parse_strict("# TYPE a gauge\n# TYPE a counter\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2: # TYPE given twice for metric family a"
        );
        let e = parse_strict("a 1\n# TYPE a gauge\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2: # TYPE after samples for metric family a"
        );
        let e = parse_strict("# HELP a x\n# HELP a y\n").unwrap_err();
        assert!(matches!(e, Error::Family { line: 2, .. }));
    }
}
