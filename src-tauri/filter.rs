//! The inbox's filter language, parsed into a [`store::AlertFilter`](crate::store::AlertFilter).
//!
//! A query is a list of whitespace-separated terms, all of which must hold:
//!
//! | term | meaning |
//! |---|---|
//! | `level=High` | field equals value; `a,b` means either |
//! | `ns!=kube-system` | field equals none of the values |
//! | `level>=High`, `level>Medium`, `level<=Medium`, `level<High` | level comparisons |
//! | `is:unread`, `!is:archived` | triage state (`unread`, `read`, `ack`, `snoozed`, `archived`) |
//! | `@age<1h`, `@age>7d` | received within, or longer ago than, a duration |
//! | `pod`, `"disk full"` | free text, matched by word prefix in the full-text index |
//!
//! Fields: `level`, `category` (`cat`), `cluster`, `namespace` (`ns`), `state`, `type`
//! (`kind`, `objectType`), `name` (`object`, `objectName`), `key`, `status`. Field names
//! ignore case; values are compared exactly, except levels, which ignore case. A value
//! with spaces is quoted: `cluster="prod eu"`. Repeating a positive term for one field
//! means any of its values, so `level=High level=Critical` equals `level=High,Critical`.

use crate::model::Level;
use crate::store::{AlertFilter, Condition, Field, TriageStatus};

/// A query that does not parse, with the term at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid filter term `{token}`: {reason}")]
pub struct FilterError {
    /// The term as typed.
    pub token: String,
    /// Byte offset of the term in the query.
    pub position: usize,
    pub reason: String,
}

const FIELD_NAMES: &str =
    "level, category, cluster, namespace (ns), state, type, name, key, status";

/// Parses `query` into a filter, with `@age` terms relative to `now_ms`.
pub fn parse(query: &str, now_ms: i64) -> Result<AlertFilter, FilterError> {
    let mut filter = AlertFilter::default();
    let mut words = Vec::new();

    for token in tokenize(query)? {
        let error = |reason: String| FilterError {
            token: token.text.clone(),
            position: token.position,
            reason,
        };
        if let Some(rest) = token.text.strip_prefix('@') {
            apply_age(&mut filter, rest, now_ms).map_err(error)?;
        } else if let Some((negate, state)) = triage_term(&token.text) {
            let status = TriageStatus::parse(&state).ok_or_else(|| {
                error(format!(
                    "unknown triage state `{state}`; use unread, read, ack, snoozed or archived"
                ))
            })?;
            push_condition(
                &mut filter,
                Field::Status,
                negate,
                vec![status.as_str().to_owned()],
            );
        } else if let Some(comparison) = split_comparison(&token.text) {
            apply_comparison(&mut filter, comparison).map_err(error)?;
        } else {
            words.push(token.text.clone());
        }
    }

    filter.text = words.join(" ");
    Ok(filter)
}

/// One term and where it starts; quotes are already removed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    text: String,
    position: usize,
}

/// Splits on whitespace outside double quotes and removes the quotes.
fn tokenize(query: &str) -> Result<Vec<Token>, FilterError> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut start = None;
    let mut quote_start = None;

    for (index, character) in query.char_indices() {
        match character {
            '"' => {
                start.get_or_insert(index);
                quote_start = match quote_start {
                    Some(_) => None,
                    None => Some(index),
                };
            }
            c if c.is_whitespace() && quote_start.is_none() => {
                if let Some(position) = start.take() {
                    tokens.push(Token {
                        text: std::mem::take(&mut current),
                        position,
                    });
                }
            }
            c => {
                start.get_or_insert(index);
                current.push(c);
            }
        }
    }
    if let Some(position) = quote_start {
        return Err(FilterError {
            token: query[position..].to_owned(),
            position,
            reason: "unclosed quote; end the value with \"".to_owned(),
        });
    }
    if let Some(position) = start {
        tokens.push(Token {
            text: current,
            position,
        });
    }
    Ok(tokens)
}

/// Recognises `is:state`, `!is:state` and `-is:state`.
fn triage_term(text: &str) -> Option<(bool, String)> {
    let (negate, rest) = match text.strip_prefix(['!', '-']) {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let state = rest
        .strip_prefix("is:")
        .or_else(|| rest.strip_prefix("IS:"))?;
    Some((negate, state.to_owned()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Equal,
    NotEqual,
    Greater,
    GreaterOrEqual,
    Less,
    LessOrEqual,
}

struct Comparison<'a> {
    field: &'a str,
    operator: Operator,
    value: &'a str,
}

/// Splits `field<op>value` at the first operator; `None` when the term has none.
fn split_comparison(text: &str) -> Option<Comparison<'_>> {
    let index = text.find(['=', '!', '<', '>'])?;
    let field = &text[..index];
    let rest = &text[index..];
    let operators = [
        ("!=", Operator::NotEqual),
        (">=", Operator::GreaterOrEqual),
        ("<=", Operator::LessOrEqual),
        ("=", Operator::Equal),
        (">", Operator::Greater),
        ("<", Operator::Less),
    ];
    let (symbol, operator) = operators
        .into_iter()
        .find(|(symbol, _)| rest.starts_with(symbol))?;
    Some(Comparison {
        field,
        operator,
        value: &rest[symbol.len()..],
    })
}

fn field_named(name: &str) -> Option<Field> {
    let field = match name.to_ascii_lowercase().as_str() {
        "level" | "severity" => Field::Level,
        "category" | "cat" => Field::Category,
        "cluster" => Field::Cluster,
        "namespace" | "ns" => Field::Namespace,
        "state" => Field::State,
        "type" | "kind" | "objecttype" | "object_type" => Field::ObjectType,
        "name" | "object" | "objectname" | "object_name" => Field::ObjectName,
        "key" => Field::Key,
        "status" | "triage" => Field::Status,
        _ => return None,
    };
    Some(field)
}

fn apply_comparison(filter: &mut AlertFilter, comparison: Comparison<'_>) -> Result<(), String> {
    if comparison.field.is_empty() {
        return Err(format!(
            "missing field name before the operator; fields are {FIELD_NAMES}"
        ));
    }
    let field = field_named(comparison.field).ok_or_else(|| {
        format!(
            "unknown field `{}`; fields are {FIELD_NAMES}",
            comparison.field
        )
    })?;
    let values: Vec<String> = comparison
        .value
        .split(',')
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
        .collect();
    if values.is_empty() {
        return Err("missing value after the operator".to_owned());
    }

    match comparison.operator {
        Operator::Equal | Operator::NotEqual => {
            if field == Field::Level {
                for value in &values {
                    parse_level(value)?;
                }
            }
            if field == Field::Status {
                for value in &values {
                    TriageStatus::parse(value).ok_or_else(|| {
                        format!("unknown triage state `{value}`; use unread, read, ack, snoozed or archived")
                    })?;
                }
            }
            let negate = comparison.operator == Operator::NotEqual;
            push_condition(filter, field, negate, values);
            Ok(())
        }
        operator => {
            if field != Field::Level {
                return Err("only `level` can be compared with <, <=, > or >=".to_owned());
            }
            let [value] = values.as_slice() else {
                return Err("a level comparison takes one level".to_owned());
            };
            apply_level_bound(filter, operator, parse_level(value)?);
            Ok(())
        }
    }
}

fn parse_level(value: &str) -> Result<Level, String> {
    Level::parse(value)
        .ok_or_else(|| format!("unknown level `{value}`; use Low, Medium, High or Critical"))
}

const LEVELS: [Level; 4] = [Level::Low, Level::Medium, Level::High, Level::Critical];

fn apply_level_bound(filter: &mut AlertFilter, operator: Operator, level: Level) {
    match operator {
        Operator::GreaterOrEqual => raise_min_level(filter, level),
        Operator::Greater => match LEVELS.into_iter().find(|candidate| *candidate > level) {
            Some(next) => raise_min_level(filter, next),
            // Nothing ranks above Critical.
            None => push_condition(filter, Field::Level, false, Vec::new()),
        },
        Operator::LessOrEqual | Operator::Less => {
            let allowed: Vec<String> = LEVELS
                .into_iter()
                .filter(|candidate| {
                    if operator == Operator::Less {
                        *candidate < level
                    } else {
                        *candidate <= level
                    }
                })
                .map(|candidate| format!("{candidate:?}"))
                .collect();
            filter.conditions.push(Condition {
                field: Field::Level,
                negate: false,
                // An empty list would be skipped by the store, so `<Low` matches a value
                // that no alert carries.
                values: if allowed.is_empty() {
                    vec![String::new()]
                } else {
                    allowed
                },
            });
        }
        Operator::Equal | Operator::NotEqual => unreachable!("handled by the caller"),
    }
}

fn raise_min_level(filter: &mut AlertFilter, level: Level) {
    filter.min_level = Some(filter.min_level.map_or(level, |current| current.max(level)));
}

/// Adds a condition, merging positive terms for one field into one list of alternatives.
fn push_condition(filter: &mut AlertFilter, field: Field, negate: bool, values: Vec<String>) {
    if values.is_empty() {
        // `level>Critical`: a value no alert carries.
        filter.conditions.push(Condition {
            field,
            negate: false,
            values: vec![String::new()],
        });
        return;
    }
    if !negate {
        if let Some(existing) = filter
            .conditions
            .iter_mut()
            .find(|condition| condition.field == field && !condition.negate)
        {
            for value in values {
                if !existing.values.contains(&value) {
                    existing.values.push(value);
                }
            }
            return;
        }
    }
    filter.conditions.push(Condition {
        field,
        negate,
        values,
    });
}

fn apply_age(filter: &mut AlertFilter, term: &str, now_ms: i64) -> Result<(), String> {
    let Some(comparison) = split_comparison(term) else {
        return Err("expected `@age<DURATION` or `@age>DURATION`, such as @age<1h".to_owned());
    };
    if !comparison.field.eq_ignore_ascii_case("age") {
        return Err(format!(
            "unknown `@{}`; the only @ term is @age, such as @age<1h",
            comparison.field
        ));
    }
    let duration = humantime::parse_duration(comparison.value).map_err(|error| {
        format!(
            "invalid duration `{}` ({error}); use a number and a unit such as 30m, 1h or 7d",
            comparison.value
        )
    })?;
    let cutoff = now_ms.saturating_sub(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX));
    match comparison.operator {
        Operator::Less | Operator::LessOrEqual => {
            filter.since_ms = Some(
                filter
                    .since_ms
                    .map_or(cutoff, |current| current.max(cutoff)),
            );
        }
        Operator::Greater | Operator::GreaterOrEqual => {
            filter.until_ms = Some(
                filter
                    .until_ms
                    .map_or(cutoff, |current| current.min(cutoff)),
            );
        }
        Operator::Equal | Operator::NotEqual => {
            return Err("@age takes < or >, such as @age<1h".to_owned());
        }
    }
    Ok(())
}

/// Quotes `value` for a query term when it contains spaces, quotes or commas.
pub fn quote_value(value: &str) -> String {
    if value.is_empty() || value.contains(|c: char| c.is_whitespace() || c == '"' || c == ',') {
        format!("\"{}\"", value.replace('"', ""))
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn condition(field: Field, negate: bool, values: &[&str]) -> Condition {
        Condition {
            field,
            negate,
            values: values.iter().map(|value| value.to_string()).collect(),
        }
    }

    #[test]
    fn empty_query_matches_everything() {
        assert_eq!(parse("   ", NOW).unwrap(), AlertFilter::default());
    }

    #[test]
    fn example_query_parses() {
        let filter = parse("level=High cluster=prod-eu ns!=kube-system pod", NOW).unwrap();
        assert_eq!(
            filter.conditions,
            vec![
                condition(Field::Level, false, &["High"]),
                condition(Field::Cluster, false, &["prod-eu"]),
                condition(Field::Namespace, true, &["kube-system"]),
            ]
        );
        assert_eq!(filter.text, "pod");
    }

    #[test]
    fn repeated_field_means_any() {
        let filter = parse("level=High level=Critical,High", NOW).unwrap();
        assert_eq!(
            filter.conditions,
            vec![condition(Field::Level, false, &["High", "Critical"])]
        );
    }

    #[test]
    fn level_at_least() {
        let filter = parse("level>=high", NOW).unwrap();
        assert_eq!(filter.min_level, Some(Level::High));
        assert!(filter.conditions.is_empty());
    }

    #[test]
    fn level_above() {
        let filter = parse("level>Medium", NOW).unwrap();
        assert_eq!(filter.min_level, Some(Level::High));
    }

    #[test]
    fn level_above_critical_matches_nothing() {
        let filter = parse("level>Critical", NOW).unwrap();
        assert_eq!(
            filter.conditions,
            vec![condition(Field::Level, false, &[""])]
        );
    }

    #[test]
    fn level_at_most() {
        let filter = parse("level<=Medium", NOW).unwrap();
        assert_eq!(
            filter.conditions,
            vec![condition(Field::Level, false, &["Low", "Medium"])]
        );
    }

    #[test]
    fn triage_terms() {
        let filter = parse("is:unread !is:archived", NOW).unwrap();
        assert_eq!(
            filter.conditions,
            vec![
                condition(Field::Status, false, &["unread"]),
                condition(Field::Status, true, &["archived"]),
            ]
        );
    }

    #[test]
    fn ack_alias_is_acknowledged() {
        let filter = parse("is:ack", NOW).unwrap();
        assert_eq!(
            filter.conditions,
            vec![condition(Field::Status, false, &["acknowledged"])]
        );
    }

    #[test]
    fn age_within() {
        let filter = parse("@age<1h", NOW).unwrap();
        assert_eq!(filter.since_ms, Some(NOW - 3_600_000));
        assert_eq!(filter.until_ms, None);
    }

    #[test]
    fn age_older_than() {
        let filter = parse("@age>2d", NOW).unwrap();
        assert_eq!(filter.until_ms, Some(NOW - 2 * 86_400_000));
    }

    #[test]
    fn quoted_value_keeps_spaces() {
        let filter = parse(r#"cluster="prod eu" "disk full""#, NOW).unwrap();
        assert_eq!(
            filter.conditions,
            vec![condition(Field::Cluster, false, &["prod eu"])]
        );
        assert_eq!(filter.text, "disk full");
    }

    #[test]
    fn field_aliases() {
        let filter = parse("ns=a kind=Pod object=web-1 cat=Health", NOW).unwrap();
        let fields: Vec<Field> = filter.conditions.iter().map(|c| c.field).collect();
        assert_eq!(
            fields,
            vec![
                Field::Namespace,
                Field::ObjectType,
                Field::ObjectName,
                Field::Category
            ]
        );
    }

    #[test]
    fn unknown_field_names_token() {
        let error = parse("level=High lvl=High", NOW).unwrap_err();
        assert_eq!(error.token, "lvl=High");
        assert_eq!(error.position, 11);
        assert!(error.to_string().contains("unknown field `lvl`"), "{error}");
    }

    #[test]
    fn unknown_level_names_value() {
        let error = parse("level=Severe", NOW).unwrap_err();
        assert!(error.reason.contains("`Severe`"), "{error}");
    }

    #[test]
    fn comparison_on_text_field_is_invalid() {
        let error = parse("cluster>a", NOW).unwrap_err();
        assert!(error.reason.contains("only `level`"), "{error}");
    }

    #[test]
    fn missing_value_is_invalid() {
        let error = parse("cluster=", NOW).unwrap_err();
        assert!(error.reason.contains("missing value"), "{error}");
    }

    #[test]
    fn bad_duration_is_invalid() {
        let error = parse("@age<soon", NOW).unwrap_err();
        assert_eq!(error.token, "@age<soon");
        assert!(error.reason.contains("invalid duration"), "{error}");
    }

    #[test]
    fn unknown_triage_state_is_invalid() {
        let error = parse("is:done", NOW).unwrap_err();
        assert!(error.reason.contains("`done`"), "{error}");
    }

    #[test]
    fn unclosed_quote_is_invalid() {
        let error = parse(r#"cluster="prod"#, NOW).unwrap_err();
        assert!(error.reason.contains("unclosed quote"), "{error}");
    }

    #[test]
    fn quote_value_quotes_spaces() {
        assert_eq!(quote_value("prod eu"), "\"prod eu\"");
        assert_eq!(quote_value("prod-eu"), "prod-eu");
    }
}
