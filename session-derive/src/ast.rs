//! The derive's input as this crate's own model: a struct with named
//! fields, each with its session key and default.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::visit_mut::{self, VisitMut};
use syn::{
    Data, DeriveInput, Fields, GenericArgument, Ident, Path, PathArguments, Type, Visibility,
};

use crate::attr::{self, ContainerAttrs, DefaultAttr, FieldAttrs};

pub struct Input<'a> {
    pub ident: &'a Ident,
    pub vis: &'a Visibility,
    pub generics: &'a syn::Generics,
    pub attrs: ContainerAttrs,
    pub fields: Vec<Field<'a>>,
}

pub struct Field<'a> {
    pub ident: &'a Ident,
    /// The field's visibility, which its accessors get.
    pub vis: &'a Visibility,
    /// The field's type, with `Self` spelled as the struct's name: the
    /// generated code names it inside impls of other types, where `Self`
    /// means something else.
    pub ty: Type,
    pub attrs: FieldAttrs,
    /// The field's name without `r#` (`r#type` is `type`): what its
    /// accessors are named after (`type()`, `set_type`, `type_mut`).
    pub name: String,
    /// The session key: the `rename`, or else `name` (`r#type` is stored
    /// under "type", as serde names it).
    pub key: String,
    /// `Option<T>` as written: a missing key reads as `None` without
    /// `#[session(default)]`.
    pub is_option: bool,
}

/// How a field reads when its key has no value.
pub enum Missing<'a> {
    /// The getter returns `Err(MissingField)`.
    Required,
    /// The getter returns this value.
    Fallback(Fallback<'a>),
}

/// The value a field without a stored value reads as.
pub enum Fallback<'a> {
    /// `#[session(default)]`: `Default::default()`.
    DefaultTrait,
    /// `#[session(default = "path")]`: `path()`.
    Function(&'a Path),
    /// An `Option<T>` field without a default: `None`.
    OptionNone,
    /// A default that did not parse: the derive failed, so this never runs.
    Invalid,
}

impl<'a> Field<'a> {
    fn from_syn(field: &'a syn::Field, data: &Ident, errors: &mut Vec<syn::Error>) -> Self {
        let ident = field.ident.as_ref().expect("named fields have names");
        let attrs = attr::field(&field.attrs, errors);
        let name = ident.unraw().to_string();
        let key = match &attrs.rename {
            Some(rename) => rename.value(),
            None => name.clone(),
        };
        Self {
            ident,
            vis: &field.vis,
            ty: without_self(&field.ty, data),
            attrs,
            name,
            key,
            is_option: is_option(&field.ty),
        }
    }

    /// Where the key is written: the `rename` literal, or the field name.
    pub fn key_span(&self) -> Span {
        match &self.attrs.rename {
            Some(rename) => rename.span(),
            None => self.ident.span(),
        }
    }

    /// How the field reads when its key has no value: a default wins over
    /// `Option`'s `None`.
    pub fn missing(&self) -> Missing<'_> {
        match (&self.attrs.default, self.is_option) {
            (Some(DefaultAttr::Trait), _) => Missing::Fallback(Fallback::DefaultTrait),
            (Some(DefaultAttr::Function(path)), _) => Missing::Fallback(Fallback::Function(path)),
            (Some(DefaultAttr::Invalid), _) => Missing::Fallback(Fallback::Invalid),
            (None, true) => Missing::Fallback(Fallback::OptionNone),
            (None, false) => Missing::Required,
        }
    }
}

impl<'a> Input<'a> {
    /// The model of `node`, or the error that the derive does not apply to
    /// it. Attribute mistakes are pushed to `errors` and parsing goes on, so
    /// every one of them is reported.
    pub fn from_syn(node: &'a DeriveInput, errors: &mut Vec<syn::Error>) -> syn::Result<Self> {
        const SHAPE: &str = "#[derive(Session)] needs a struct with named fields, \
                             one per session key: `struct Visit { count: u64 }`";
        let fields = match &node.data {
            Data::Struct(data) => match &data.fields {
                Fields::Named(named) => named,
                Fields::Unnamed(unnamed) => {
                    return Err(syn::Error::new(
                        unnamed.span(),
                        format!("{SHAPE}; a tuple struct's fields have no names to use as keys"),
                    ));
                }
                Fields::Unit => {
                    return Err(syn::Error::new(
                        node.ident.span(),
                        format!("{SHAPE}; a unit struct has no fields"),
                    ));
                }
            },
            Data::Enum(data) => {
                return Err(syn::Error::new(
                    data.enum_token.span(),
                    format!("{SHAPE}; an enum cannot be a session"),
                ));
            }
            Data::Union(data) => {
                return Err(syn::Error::new(
                    data.union_token.span(),
                    format!("{SHAPE}; a union cannot be a session"),
                ));
            }
        };
        let attrs = attr::container(&node.attrs, errors);
        let fields = fields
            .named
            .iter()
            .map(|field| Field::from_syn(field, &node.ident, errors))
            .collect();
        Ok(Self {
            ident: &node.ident,
            vis: &node.vis,
            generics: &node.generics,
            attrs,
            fields,
        })
    }
}

/// `ty` with every path that starts with `Self` starting with `data`
/// instead (the struct has no generic parameters, so the two are the same
/// type).
fn without_self(ty: &Type, data: &Ident) -> Type {
    struct SelfToName<'a>(&'a Ident);
    impl VisitMut for SelfToName<'_> {
        fn visit_path_mut(&mut self, path: &mut Path) {
            if path.leading_colon.is_none()
                && let Some(first) = path.segments.first_mut()
                && first.ident == "Self"
            {
                first.ident = Ident::new(&self.0.to_string(), first.ident.span());
            }
            visit_mut::visit_path_mut(self, path);
        }
    }
    let mut ty = ty.clone();
    SelfToName(data).visit_type_mut(&mut ty);
    ty
}

fn is_option(ty: &Type) -> bool {
    let Type::Path(path) = ty else {
        return false;
    };
    let Some(last) = path.path.segments.last() else {
        return false;
    };
    let PathArguments::AngleBracketed(arguments) = &last.arguments else {
        return false;
    };
    last.ident == "Option"
        && arguments.args.len() == 1
        && matches!(arguments.args.first(), Some(GenericArgument::Type(_)))
}
