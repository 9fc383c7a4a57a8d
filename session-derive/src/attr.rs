//! Parsing `#[session(...)]` on the struct and on its fields. Syntax only:
//! what a well-formed attribute means is checked in `valid`.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Attribute, Expr, ExprLit, ExprUnary, Lit, LitStr, Meta, Path, UnOp};

/// `#[session(...)]` on the struct.
#[derive(Default)]
pub struct ContainerAttrs {
    /// `max_age = 1800` or `max_age = "30m"`: seconds, and where it was
    /// written.
    pub max_age: Option<(u64, Span)>,
    /// `crate = "path"`: where the runtime crate is.
    pub krate: Option<Path>,
    /// `kind = Admin`: the session kind whose session the struct reads.
    pub kind: Option<Path>,
}

/// `#[session(...)]` on a field.
#[derive(Default)]
pub struct FieldAttrs {
    /// `rename = "key"`.
    pub rename: Option<LitStr>,
    /// `default` or `default = "path::to::fn"`.
    pub default: Option<DefaultAttr>,
}

/// How a field without a value in the session gets one.
pub enum DefaultAttr {
    /// `default`: `Default::default()`.
    Trait,
    /// `default = "path"`: calls `path()`.
    Function(Path),
    /// A `default = …` that did not parse (reported): the code compiles
    /// as if it had a default and never runs.
    Invalid,
}

/// The `#[session]` attributes among `attrs`, each a list with at least one
/// item; a bare or empty one is reported.
fn session_attrs<'a>(attrs: &'a [Attribute], errors: &mut Vec<syn::Error>) -> Vec<&'a Attribute> {
    let mut found = Vec::new();
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("session")) {
        match &attr.meta {
            Meta::List(list) if !list.tokens.is_empty() => found.push(attr),
            _ => errors.push(syn::Error::new_spanned(
                attr,
                "expected `#[session(...)]` with at least one setting, \
                 e.g. `#[session(rename = \"key\")]` or `#[session(default)]`",
            )),
        }
    }
    found
}

fn duplicate(meta: &syn::meta::ParseNestedMeta<'_>, name: &str) -> syn::Error {
    meta.error(format!("duplicate `{name}` setting: give it once"))
}

pub fn container(attrs: &[Attribute], errors: &mut Vec<syn::Error>) -> ContainerAttrs {
    let mut parsed = ContainerAttrs::default();
    for attr in session_attrs(attrs, errors) {
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("max_age") {
                if parsed.max_age.is_some() {
                    return Err(duplicate(&meta, "max_age"));
                }
                let expr: Expr = meta.value()?.parse()?;
                parsed.max_age = Some((max_age(&expr)?, expr.span()));
            } else if meta.path.is_ident("kind") {
                if parsed.kind.is_some() {
                    return Err(duplicate(&meta, "kind"));
                }
                parsed.kind = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("crate") {
                if parsed.krate.is_some() {
                    return Err(duplicate(&meta, "crate"));
                }
                let path: LitStr = meta.value()?.parse()?;
                parsed.krate = Some(path.parse()?);
            } else if meta.path.is_ident("rename") || meta.path.is_ident("default") {
                return Err(meta.error("`rename` and `default` go on fields, not on the struct"));
            } else {
                return Err(meta.error(
                    "unknown setting for the struct: expected `max_age = ...`, `kind = ...` \
                     or `crate = \"...\"`",
                ));
            }
            Ok(())
        });
        if let Err(error) = result {
            errors.push(error);
        }
    }
    parsed
}

pub fn field(attrs: &[Attribute], errors: &mut Vec<syn::Error>) -> FieldAttrs {
    let mut parsed = FieldAttrs::default();
    for attr in session_attrs(attrs, errors) {
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("rename") {
                if parsed.rename.is_some() {
                    return Err(duplicate(&meta, "rename"));
                }
                parsed.rename = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("default") {
                if parsed.default.is_some() {
                    return Err(duplicate(&meta, "default"));
                }
                if !meta.input.peek(syn::Token![=]) {
                    parsed.default = Some(DefaultAttr::Trait);
                    return Ok(());
                }
                // Until the path parses, the field still has a default, so
                // its getter keeps the plain type and its uses add no
                // errors to the one reported here.
                parsed.default = Some(DefaultAttr::Invalid);
                let path: LitStr = meta.value()?.parse().map_err(|error| {
                    syn::Error::new(
                        error.span(),
                        "expected `default` or `default = \"path::to::function\"`",
                    )
                })?;
                parsed.default = Some(DefaultAttr::Function(path.parse()?));
            } else if meta.path.is_ident("max_age")
                || meta.path.is_ident("crate")
                || meta.path.is_ident("kind")
            {
                return Err(
                    meta.error("`max_age`, `kind` and `crate` go on the struct, not on a field")
                );
            } else {
                return Err(meta.error(
                    "unknown setting for a field: expected `rename = \"...\"`, `default` \
                     or `default = \"path::to::function\"`",
                ));
            }
            Ok(())
        });
        if let Err(error) = result {
            errors.push(error);
        }
    }
    parsed
}

const MAX_AGE_HELP: &str = "`max_age` is a positive number of seconds (`max_age = 1800`) \
                            or a duration (`max_age = \"30m\"`, \"12h\", \"7d\", \"1h30m\")";

/// `max_age = 1800` or `max_age = "30m"`, in seconds (zero is let through
/// for `valid` to report).
fn max_age(expr: &Expr) -> syn::Result<u64> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => int
            .base10_parse::<u64>()
            .map_err(|_| syn::Error::new_spanned(int, MAX_AGE_HELP)),
        Expr::Lit(ExprLit {
            lit: Lit::Str(text),
            ..
        }) => {
            parse_duration(&text.value()).ok_or_else(|| syn::Error::new_spanned(text, MAX_AGE_HELP))
        }
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_), ..
        }) => Err(syn::Error::new_spanned(
            expr,
            format!("a negative max age never lets a session live: {MAX_AGE_HELP}"),
        )),
        other => Err(syn::Error::new_spanned(other, MAX_AGE_HELP)),
    }
}

/// `"90"`, `"90s"`, `"30m"`, `"12h"`, `"7d"`, `"1h30m"` in seconds.
pub fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(seconds);
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return None,
        };
        let value: u64 = number.parse().ok()?;
        total = total.checked_add(value.checked_mul(unit)?)?;
        number.clear();
    }
    number
        .is_empty()
        .then_some(total)
        .filter(|_| !text.is_empty())
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1800"), Some(1800));
        assert_eq!(parse_duration("90s"), Some(90));
        assert_eq!(parse_duration("30m"), Some(1800));
        assert_eq!(parse_duration("1h30m"), Some(5400));
        assert_eq!(parse_duration("7d"), Some(604_800));
        for bad in ["", "soon", "m", "30x", "1h30", "-5m"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
