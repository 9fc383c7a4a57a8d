//! Every mistake in a well-parsed input, found before any code is
//! generated, each spanned on the token to fix.

use std::collections::HashMap;

use syn::spanned::Spanned;

use crate::ast::Input;

/// Methods of `TypedSession` itself: a getter of the same name would be
/// hidden behind them.
const TYPED_SESSION_METHODS: &[&str] = &[
    "get",
    "set",
    "session",
    "invalidate",
    "renew",
    "start_new",
    "bind_user",
    "from_session",
];

impl<'a> Input<'a> {
    /// Pushes every mistake to `errors`; returns the fields whose accessors
    /// clash with another field's, which the code leaves out so the clash
    /// is reported once.
    pub fn validate(&self, errors: &mut Vec<syn::Error>) -> Vec<&'a syn::Ident> {
        let mut hidden = Vec::new();
        if !self.generics.params.is_empty() {
            errors.push(syn::Error::new(
                self.generics.params.span(),
                "#[derive(Session)] does not support generic structs: a session's keys and \
                 types are fixed; use concrete field types",
            ));
        }
        if let Some((0, span)) = self.attrs.max_age {
            errors.push(syn::Error::new(
                span,
                "`max_age` must be at least one second: a session that expires at once \
                 cannot hold anything",
            ));
        }
        let mut keys: HashMap<&str, &syn::Ident> = HashMap::new();
        let mut methods: HashMap<String, &syn::Ident> = HashMap::new();
        for field in &self.fields {
            let key = &field.key;
            if let Some(rename) = &field.attrs.rename
                && key.is_empty()
            {
                errors.push(syn::Error::new(
                    rename.span(),
                    "`rename` needs a non-empty session key",
                ));
                continue;
            }
            if let Some(first) = keys.get(key.as_str()) {
                errors.push(syn::Error::new(
                    field.key_span(),
                    format!(
                        "two fields map to the session key \"{key}\": `{first}` and `{}`; \
                         give one of them another key with `#[session(rename = \"...\")]`",
                        field.ident
                    ),
                ));
            } else {
                keys.insert(key.as_str(), field.ident);
            }
            let name = &field.name;
            if TYPED_SESSION_METHODS.contains(&name.as_str()) {
                errors.push(syn::Error::new(
                    field.ident.span(),
                    format!(
                        "a field named `{name}` would be hidden by `TypedSession::{name}`; \
                         rename the field and keep the key with `#[session(rename = \"{name}\")]`"
                    ),
                ));
            }
            for method in [name.clone(), format!("set_{name}"), format!("{name}_mut")] {
                if let Some(first) = methods.get(&method) {
                    errors.push(syn::Error::new(
                        field.ident.span(),
                        format!(
                            "the accessor `{method}` of field `{}` clashes with one generated \
                             for field `{first}`; rename one of the fields",
                            field.ident
                        ),
                    ));
                    hidden.push(field.ident);
                } else {
                    methods.insert(method, field.ident);
                }
            }
        }
        hidden
    }
}
