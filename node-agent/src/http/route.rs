//! Route patterns (`http_routes`): how a request's path becomes the
//! `http_route` label without one series per id.
//!
//! A pattern is a path whose segments are literal, `{name}` or `*` (any one
//! segment), or end with `**` (any rest, including none): `/users/{id}`,
//! `/api/*/items`, `/static/**`. The first pattern that matches names the
//! route; a path no pattern matches is `_OTHER`. Without patterns, there is
//! no `http_route` label: the path is never a label by itself.

/// The route of a path that no configured pattern matches.
pub const OTHER: &str = "_OTHER";

#[derive(Debug, Clone, Default)]
pub struct Routes {
    patterns: Vec<(String, Vec<Segment>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Any,
    Rest,
}

/// A pattern that is not a path.
#[derive(Debug, thiserror::Error)]
#[error("http_routes: {0:?} must start with '/', with '**' only as its last segment")]
pub struct BadPattern(pub String);

impl Routes {
    pub fn new(patterns: &[String]) -> Result<Self, BadPattern> {
        let patterns = patterns
            .iter()
            .map(|p| {
                let segments: Vec<_> = split(p)
                    .ok_or_else(|| BadPattern(p.clone()))?
                    .map(|s| match s {
                        "*" => Segment::Any,
                        "**" => Segment::Rest,
                        s if s.starts_with('{') && s.ends_with('}') => Segment::Any,
                        s => Segment::Literal(s.to_owned()),
                    })
                    .collect();
                let rest = segments.iter().position(|s| *s == Segment::Rest);
                if rest.is_some_and(|i| i + 1 != segments.len()) {
                    return Err(BadPattern(p.clone()));
                }
                Ok((p.clone(), segments))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { patterns })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The route label of `path`: None without patterns.
    pub fn of(&self, path: &str) -> Option<String> {
        if self.patterns.is_empty() {
            return None;
        }
        let Some(parts) = split(path) else {
            return Some(OTHER.to_owned());
        };
        let parts: Vec<_> = parts.collect();
        let found = self.patterns.iter().find(|(_, segs)| matches(segs, &parts));
        Some(found.map_or(OTHER, |(p, _)| p.as_str()).to_owned())
    }
}

fn split(path: &str) -> Option<impl Iterator<Item = &str>> {
    let rest = path.strip_prefix('/')?;
    Some(rest.split('/').filter(|s| !s.is_empty()))
}

fn matches(pattern: &[Segment], parts: &[&str]) -> bool {
    match (pattern.first(), parts.first()) {
        (Some(Segment::Rest), _) => true,
        (None, None) => true,
        (Some(Segment::Any), Some(_)) => matches(&pattern[1..], &parts[1..]),
        (Some(Segment::Literal(l)), Some(p)) if l == p => matches(&pattern[1..], &parts[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_matching_pattern_names_the_route() {
        let routes = Routes::new(&[
            "/users/{id}".into(),
            "/api/*/items".into(),
            "/static/**".into(),
            "/".into(),
        ])
        .unwrap();
        assert_eq!(routes.of("/users/42").as_deref(), Some("/users/{id}"));
        assert_eq!(routes.of("/users/42/").as_deref(), Some("/users/{id}"));
        assert_eq!(routes.of("/users").as_deref(), Some(OTHER));
        assert_eq!(routes.of("/api/v1/items").as_deref(), Some("/api/*/items"));
        assert_eq!(
            routes.of("/static/css/a.css").as_deref(),
            Some("/static/**")
        );
        assert_eq!(routes.of("/static").as_deref(), Some("/static/**"));
        assert_eq!(routes.of("/").as_deref(), Some("/"));
        assert_eq!(routes.of("*").as_deref(), Some(OTHER));
        assert_eq!(Routes::default().of("/users/42"), None);
    }

    #[test]
    fn bad_patterns_are_named() {
        assert!(Routes::new(&["users".into()]).is_err());
        let err = Routes::new(&["/a/**/b".into()]).unwrap_err();
        assert!(err.to_string().contains("/a/**/b"));
    }
}
