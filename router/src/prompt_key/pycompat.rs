//! The Python-flavoured parts of HuggingFace's Jinja environment that chat templates rely on:
//! `str`/`dict`/`list` methods (`strip`, `startswith`, `items`, `get`, ...), a `tojson` that
//! writes what Python's `json.dumps` writes, `raise_exception` and `strftime_now`.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Error, ErrorKind, State};

/// Installs the methods, filters and globals on `env`.
pub(super) fn install(env: &mut minijinja::Environment<'_>) {
    env.set_unknown_method_callback(call_method);
    env.add_filter("tojson", tojson);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
}

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

fn unknown() -> Error {
    Error::from(ErrorKind::UnknownMethod)
}

fn bad_args(method: &str) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("unsupported arguments to .{method}()"),
    )
}

fn str_arg<'a>(args: &'a [Value], i: usize, method: &str) -> Result<Option<&'a str>, Error> {
    match args.get(i) {
        None => Ok(None),
        Some(v) if v.is_none() => Ok(None),
        Some(v) => v.as_str().map(Some).ok_or_else(|| bad_args(method)),
    }
}

fn call_method(
    state: &mut State<'_, '_>,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    match value.kind() {
        ValueKind::String => string_method(value.as_str().unwrap_or_default(), method, args),
        ValueKind::Map => map_method(state, value, method, args),
        ValueKind::Seq => match method {
            "count" => {
                let needle = args.first().ok_or_else(|| bad_args(method))?;
                Ok(Value::from(
                    value.try_iter()?.filter(|v| v == needle).count(),
                ))
            }
            "index" => {
                let needle = args.first().ok_or_else(|| bad_args(method))?;
                value
                    .try_iter()?
                    .position(|v| &v == needle)
                    .map(Value::from)
                    .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "value is not in list"))
            }
            _ => Err(unknown()),
        },
        _ => Err(unknown()),
    }
}

fn map_method(
    state: &mut State<'_, '_>,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    match method {
        "items" => state.apply_filter("items", std::slice::from_ref(value)),
        "keys" => Ok(value.try_iter()?.collect()),
        "values" => Ok(value
            .try_iter()?
            .map(|k| value.get_item(&k).unwrap_or_default())
            .collect()),
        "get" => {
            let key = args.first().ok_or_else(|| bad_args(method))?;
            let found = value.get_item(key)?;
            Ok(if found.is_undefined() {
                args.get(1).cloned().unwrap_or(Value::from(()))
            } else {
                found
            })
        }
        _ => Err(unknown()),
    }
}

fn string_method(s: &str, method: &str, args: &[Value]) -> Result<Value, Error> {
    let chars = |i| str_arg(args, i, method);
    let strip_set = |set: Option<&str>| {
        let set: Vec<char> = set.map(|s| s.chars().collect()).unwrap_or_default();
        move |c: char| {
            if set.is_empty() {
                c.is_whitespace()
            } else {
                set.contains(&c)
            }
        }
    };
    Ok(match method {
        "strip" => Value::from(s.trim_matches(strip_set(chars(0)?))),
        "lstrip" => Value::from(s.trim_start_matches(strip_set(chars(0)?))),
        "rstrip" => Value::from(s.trim_end_matches(strip_set(chars(0)?))),
        "upper" => Value::from(s.to_uppercase()),
        "lower" => Value::from(s.to_lowercase()),
        "title" | "capitalize" => Value::from(capitalize(s, method == "title")),
        "startswith" | "endswith" => {
            let test = |p: &str| {
                if method == "startswith" {
                    s.starts_with(p)
                } else {
                    s.ends_with(p)
                }
            };
            let arg = args.first().ok_or_else(|| bad_args(method))?;
            match arg.as_str() {
                Some(p) => Value::from(test(p)),
                // A tuple (list) of candidates.
                None => Value::from(arg.try_iter()?.any(|p| p.as_str().is_some_and(test))),
            }
        }
        "split" | "rsplit" => split(s, method, args)?,
        "splitlines" => s.lines().map(Value::from).collect(),
        "replace" => {
            let (from, to) = (chars(0)?, chars(1)?);
            let (Some(from), Some(to)) = (from, to) else {
                return Err(bad_args(method));
            };
            match args.get(2).and_then(Value::as_i64) {
                Some(n) if n >= 0 => Value::from(s.replacen(from, to, n as usize)),
                _ => Value::from(s.replace(from, to)),
            }
        }
        "find" | "rfind" | "index" | "count" => {
            let needle = chars(0)?.ok_or_else(|| bad_args(method))?;
            let found = match method {
                "rfind" => s.rfind(needle),
                "count" => return Ok(Value::from(s.matches(needle).count())),
                _ => s.find(needle),
            };
            match (found, method) {
                (Some(byte), _) => Value::from(s[..byte].chars().count()),
                (None, "index") => {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "substring not found",
                    ));
                }
                (None, _) => Value::from(-1),
            }
        }
        "join" => {
            let items = args.first().ok_or_else(|| bad_args(method))?;
            let parts: Vec<String> = items.try_iter()?.map(|v| v.to_string()).collect();
            Value::from(parts.join(s))
        }
        "isdigit" => Value::from(!s.is_empty() && s.chars().all(|c| c.is_ascii_digit())),
        "isalpha" => Value::from(!s.is_empty() && s.chars().all(char::is_alphabetic)),
        "isspace" => Value::from(!s.is_empty() && s.chars().all(char::is_whitespace)),
        "isupper" => Value::from(s.chars().any(char::is_uppercase) && s == s.to_uppercase()),
        "islower" => Value::from(s.chars().any(char::is_lowercase) && s == s.to_lowercase()),
        _ => return Err(unknown()),
    })
}

fn capitalize(s: &str, every_word: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.extend(c.to_lowercase());
        }
        start = every_word && !c.is_alphanumeric();
    }
    out
}

fn split(s: &str, method: &str, args: &[Value]) -> Result<Value, Error> {
    let sep = str_arg(args, 0, method)?;
    let max = args
        .get(1)
        .and_then(Value::as_i64)
        .filter(|n| *n >= 0)
        .map(|n| n as usize + 1);
    let parts: Vec<&str> = match (sep, max, method) {
        (Some(""), ..) => return Err(bad_args(method)),
        (Some(sep), None, _) => s.split(sep).collect(),
        (Some(sep), Some(n), "split") => s.splitn(n, sep).collect(),
        (Some(sep), Some(n), _) => {
            let mut v: Vec<&str> = s.rsplitn(n, sep).collect();
            v.reverse();
            v
        }
        // No separator: runs of whitespace, no empty parts (maxsplit ignored here).
        (None, ..) => s.split_whitespace().collect(),
    };
    Ok(parts.into_iter().map(Value::from).collect())
}

/// `tojson` as HuggingFace defines it: Python's `json.dumps` with `ensure_ascii=False`, so
/// `", "` and `": "` separators (`","` with `indent`), non-ASCII text unescaped.
fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<Value> = kwargs.get("indent")?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(match (v.as_i64(), v.as_str()) {
            (Some(n), _) => " ".repeat(n.max(0) as usize),
            (None, Some(s)) => s.to_owned(),
            _ => return Err(bad_args("tojson")),
        }),
    };
    // Python's other knobs (`sort_keys`, `separators`, `ensure_ascii`) are accepted and ignored:
    // maps are already in key order here.
    for knob in ["sort_keys", "separators", "ensure_ascii"] {
        let _: Option<Value> = kwargs.get(knob)?;
    }
    kwargs.assert_all_used()?;
    let mut out = String::new();
    write_json(value, indent.as_deref(), 0, &mut out)?;
    Ok(Value::from_safe_string(out))
}

fn write_json(
    v: &Value,
    indent: Option<&str>,
    depth: usize,
    out: &mut String,
) -> Result<(), Error> {
    let newline = |out: &mut String, depth: usize| {
        if let Some(unit) = indent {
            out.push('\n');
            for _ in 0..depth {
                out.push_str(unit);
            }
        }
    };
    let item_sep = if indent.is_some() { "," } else { ", " };
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => match v.as_i64() {
            Some(i) if v.is_integer() => {
                let _ = write!(out, "{i}");
            }
            _ => {
                let f = f64::try_from(v.clone())?;
                let _ = write!(out, "{f:?}");
            }
        },
        ValueKind::String => write_json_str(v.as_str().unwrap_or_default(), out),
        ValueKind::Map => {
            let keys: Vec<Value> = v.try_iter()?.collect();
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                match k.as_str() {
                    Some(s) => write_json_str(s, out),
                    None => write_json_str(&k.to_string(), out),
                }
                out.push_str(": ");
                write_json(&v.get_item(k)?, indent, depth + 1, out)?;
            }
            newline(out, depth);
            out.push('}');
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                write_json(item, indent, depth + 1, out)?;
            }
            newline(out, depth);
            out.push(']');
        }
        _ => write_json_str(&v.to_string(), out),
    }
    Ok(())
}

fn write_json_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// `strftime_now(format)`: the current UTC time in Python's `strftime` format (the common
/// directives; others are kept as written).
fn strftime_now(format: String) -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    strftime(secs, &format)
}

/// Formats `secs` since the Unix epoch (UTC) with strftime directives.
pub(super) fn strftime(secs: u64, format: &str) -> String {
    let days = (secs / 86_400) as i64;
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    let weekday = ((days + 3).rem_euclid(7)) as usize; // 1970-01-01 was a Thursday.
    let mut out = String::new();
    let mut it = format.chars();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let _ = match it.next() {
            Some('Y') => write!(out, "{y}"),
            Some('y') => write!(out, "{:02}", y.rem_euclid(100)),
            Some('m') => write!(out, "{m:02}"),
            Some('d') => write!(out, "{d:02}"),
            Some('-') => match it.next() {
                Some('d') => write!(out, "{d}"),
                Some('m') => write!(out, "{m}"),
                Some(other) => write!(out, "%-{other}"),
                None => write!(out, "%-"),
            },
            Some('B') => write!(out, "{}", MONTHS[m as usize - 1]),
            Some('b') => write!(out, "{}", &MONTHS[m as usize - 1][..3]),
            Some('A') => write!(out, "{}", DAYS[weekday]),
            Some('a') => write!(out, "{}", &DAYS[weekday][..3]),
            Some('H') => write!(out, "{hh:02}"),
            Some('M') => write!(out, "{mm:02}"),
            Some('S') => write!(out, "{ss:02}"),
            Some('%') => write!(out, "%"),
            Some(other) => write!(out, "%{other}"),
            None => write!(out, "%"),
        };
    }
    out
}

/// Year, month (1-12) and day (1-31) of a day number counted from 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(src: &str, ctx: Value) -> String {
        let mut env = minijinja::Environment::new();
        install(&mut env);
        env.render_str(src, ctx).unwrap()
    }

    #[test]
    fn python_string_methods() {
        let ctx = Value::from_pairs([("s", Value::from("  Hello World \n"))]);
        assert_eq!(render("[{{ s.strip() }}]", ctx.clone()), "[Hello World]");
        assert_eq!(
            render("[{{ s.lstrip() }}]", ctx.clone()),
            "[Hello World \n]"
        );
        assert_eq!(render("[{{ s.rstrip() }}]", ctx.clone()), "[  Hello World]");
        assert_eq!(
            render("{{ s.strip().startswith('Hello') }}", ctx.clone()),
            "True"
        );
        assert_eq!(
            render("{{ s.strip().endswith(('x', 'ld')) }}", ctx.clone()),
            "True"
        );
        assert_eq!(render("{{ s.split() | length }}", ctx.clone()), "2");
        assert_eq!(
            render("{{ 'a,b,c'.split(',', 1) }}", ctx.clone()),
            "['a', 'b,c']"
        );
        assert_eq!(render("{{ 'x-y'.replace('-', '+') }}", ctx.clone()), "x+y");
        assert_eq!(
            render("{{ 'ab'.upper() }}{{ 'hi there'.title() }}", ctx),
            "ABHi There"
        );
    }

    #[test]
    fn dict_methods_and_exceptions() {
        let ctx = Value::from_pairs([(
            "m",
            Value::from_pairs([("role", Value::from("user")), ("content", Value::from("x"))]),
        )]);
        assert_eq!(
            render(
                "{% for k, v in m.items() %}{{ k }}={{ v }};{% endfor %}",
                ctx.clone()
            ),
            "role=user;content=x;"
        );
        assert_eq!(
            render(
                "{{ m.get('name', 'anon') }}/{{ m.get('role') }}",
                ctx.clone()
            ),
            "anon/user"
        );
        let mut env = minijinja::Environment::new();
        install(&mut env);
        let e = env
            .render_str("{{ raise_exception('roles must alternate') }}", ctx)
            .unwrap_err();
        assert!(e.to_string().contains("roles must alternate"), "{e}");
    }

    #[test]
    fn tojson_is_pythons_json_dumps() {
        let v: serde_json::Value =
            serde_json::json!({"b": [1, 2.5, true, null], "a": "é\"\n", "c": {}});
        let ctx = Value::from_pairs([("v", super::super::template::to_jinja(&v))]);
        assert_eq!(
            render("{{ v | tojson }}", ctx.clone()),
            r#"{"a": "é\"\n", "b": [1, 2.5, true, null], "c": {}}"#
        );
        assert_eq!(
            render("{{ v.b | tojson(indent=2) }}", ctx),
            "[\n  1,\n  2.5,\n  true,\n  null\n]"
        );
    }

    #[test]
    fn strftime_formats_utc_dates() {
        // 2024-07-23 13:05:09 UTC, a Tuesday.
        let t = 1_721_739_909;
        assert_eq!(strftime(t, "%d %b %Y"), "23 Jul 2024");
        assert_eq!(
            strftime(t, "%A %B %-d, %y %H:%M:%S %%"),
            "Tuesday July 23, 24 13:05:09 %"
        );
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }
}
