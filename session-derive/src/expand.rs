//! The code `#[derive(Session)]` writes: an implementation of
//! `SessionData` and a view type holding the typed accessors that
//! `TypedSession<Self>` dereferences to.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{DeriveInput, parse_quote};

use crate::ast::{Fallback, Field, Input, Missing};

/// The derive's output: the code, or every mistake found together with as
/// much of the code as still makes sense, so that each mistake is reported
/// once and the struct's uses (`TypedSession<Visit>` in a handler, its
/// accessors) add no errors of their own, as thiserror and serde do.
pub fn derive(node: &DeriveInput) -> TokenStream {
    let mut errors = Vec::new();
    let code = match Input::from_syn(node, &mut errors) {
        Ok(input) => {
            let hidden = input.validate(&mut errors);
            if input.generics.params.is_empty() {
                expand(&input, &hidden)
            } else {
                // An impl over generics would add errors of its own.
                TokenStream::new()
            }
        }
        Err(error) => {
            errors.push(error);
            fallback(node)
        }
    };
    let errors = errors.into_iter().map(syn::Error::into_compile_error);
    quote!(#(#errors)* #code)
}

/// `SessionData` for a type the derive cannot apply to (an enum, a tuple
/// struct): no keys and no accessors, so that only the derive's own error
/// is reported, not one at every `TypedSession<T>`.
fn fallback(node: &DeriveInput) -> TokenStream {
    if !node.generics.params.is_empty() {
        return TokenStream::new();
    }
    let ident = &node.ident;
    let krate: syn::Path = parse_quote!(::typed_sessions);
    quote! {
        const _: () = {
            impl #krate::__private::SessionData for #ident {
                const MAX_AGE: ::core::option::Option<u64> = ::core::option::Option::None;
                const KEYS: &'static [&'static str] = &[];
                type Kind = #krate::__private::Main;
                type View = #krate::__private::Fields<Self>;

                fn view(fields: #krate::__private::Fields<Self>) -> Self::View {
                    fields
                }

                fn fields(view: &Self::View) -> &#krate::__private::Fields<Self> {
                    view
                }

                fn read(
                    _: &#krate::__private::Fields<Self>,
                ) -> ::core::result::Result<Self, #krate::__private::MissingField> {
                    ::core::unreachable!("#[derive(Session)] failed: this type does not compile")
                }

                fn write(&self, _: &#krate::__private::Fields<Self>) {}
            }
        };
    }
}

/// The code for `input`; the fields named in `hidden` get no accessors
/// (theirs would clash with another field's, which was reported).
fn expand(input: &Input<'_>, hidden: &[&syn::Ident]) -> TokenStream {
    let ident = input.ident;
    let vis = input.vis;
    let krate: syn::Path = input
        .attrs
        .krate
        .clone()
        .unwrap_or_else(|| parse_quote!(::typed_sessions));
    let view = format_ident!("{}Accessors", ident);
    let max_age = match input.attrs.max_age {
        Some((seconds, _)) => quote!(::core::option::Option::Some(#seconds)),
        None => quote!(::core::option::Option::None),
    };
    let kind: syn::Path = input
        .attrs
        .kind
        .clone()
        .unwrap_or_else(|| parse_quote!(#krate::__private::Main));
    let keys = input.fields.iter().map(|field| &field.key);
    let accessors = input
        .fields
        .iter()
        .filter(|field| !hidden.contains(&field.ident))
        .map(|field| accessors(field, ident, &krate));
    let key_types = input
        .fields
        .iter()
        .map(|field| key_type(field, ident, &krate));
    let reads = input.fields.iter().map(|field| {
        let name = field.ident;
        let key = key_ident(ident, field);
        let read = match field.missing() {
            Missing::Required => quote!(fields.require::<#key>()?),
            Missing::Fallback(fallback) => {
                let default = fallback_fn(&fallback);
                quote!(fields.get_or_else::<#key>(#default))
            }
        };
        quote!(#name: #read)
    });
    let writes = input.fields.iter().map(|field| {
        let name = field.ident;
        let key = key_ident(ident, field);
        quote!(fields.set_if_changed::<#key>(&self.#name);)
    });
    let view_doc = format!(
        "The typed accessors of [`{ident}`]'s session keys, reached through \
         `TypedSession<{ident}>`."
    );

    quote! {
        const _: () = {
            #[doc = #view_doc]
            #vis struct #view(#krate::__private::Fields<#ident>);

            #(#key_types)*

            impl #view {
                #(#accessors)*
            }

            impl #krate::__private::SessionData for #ident {
                const MAX_AGE: ::core::option::Option<u64> = #max_age;
                const KEYS: &'static [&'static str] = &[#(#keys),*];
                type Kind = #kind;
                type View = #view;

                fn view(fields: #krate::__private::Fields<Self>) -> #view {
                    #view(fields)
                }

                fn fields(view: &#view) -> &#krate::__private::Fields<Self> {
                    &view.0
                }

                fn read(
                    fields: &#krate::__private::Fields<Self>,
                ) -> ::core::result::Result<Self, #krate::__private::MissingField> {
                    ::core::result::Result::Ok(Self { #(#reads,)* })
                }

                fn write(&self, fields: &#krate::__private::Fields<Self>) {
                    #(#writes)*
                }
            }
        };
    }
}

/// The name of the type that stands for `field`'s key. It lives in the
/// derive's anonymous `const` block, so it cannot clash with user names.
fn key_ident(data: &syn::Ident, field: &Field<'_>) -> syn::Ident {
    format_ident!("__{}Key_{}", data, field.name)
}

/// The type standing for `field`'s key. Its `Value` is spanned on the
/// field's type, so a type that cannot be stored in a session is reported
/// there, once.
///
/// It is private (visible in the struct's module) whatever the field's
/// visibility, and appears in no signature: a `pub` one would implement the
/// public `FieldKey` with `Data` or `Value` a private type (E0446) as soon as
/// a field is more visible than its struct or its type.
fn key_type(field: &Field<'_>, data: &syn::Ident, krate: &syn::Path) -> TokenStream {
    let key_type = key_ident(data, field);
    let key = &field.key;
    let ty = &field.ty;
    let value = quote_spanned!(ty.span()=> type Value = #ty;);
    quote! {
        #[doc(hidden)]
        #[allow(non_camel_case_types)]
        struct #key_type;

        impl #krate::__private::FieldKey for #key_type {
            type Data = #data;
            #value
            const KEY: &'static str = #key;
        }
    }
}

/// The closure that gives a missing field its value.
fn fallback_fn(fallback: &Fallback<'_>) -> TokenStream {
    match fallback {
        Fallback::DefaultTrait => quote!(::core::default::Default::default),
        Fallback::Function(path) => quote!(#path),
        Fallback::OptionNone => quote!(|| ::core::option::Option::None),
        Fallback::Invalid => quote!(|| ::core::unreachable!("#[derive(Session)] failed")),
    }
}

/// A getter, a setter and a mutable accessor for `field`, each as visible
/// as the field: a private field's accessors are usable in the struct's
/// module only, as the field is.
fn accessors(field: &Field<'_>, data: &syn::Ident, krate: &syn::Path) -> TokenStream {
    let vis = field.vis;
    let ty = &field.ty;
    let name = field.ident;
    let plain = &field.name;
    let setter = format_ident!("set_{}", plain);
    let mutable = format_ident!("{}_mut", plain);
    let key_type = key_ident(data, field);
    let key = &field.key;
    let set_doc =
        format!("Sets `{plain}` (session key `\"{key}\"`), marking only that key changed.");
    let mut_doc = format!(
        "`{plain}` (session key `\"{key}\"`) for changing in place; stored back, marking only \
         that key changed, when the guard is dropped."
    );
    let (getter, mutable_accessor) = match field.missing() {
        Missing::Required => {
            let get_doc = format!(
                "`{plain}` (session key `\"{key}\"`); an error when the key has no value, \
                 or a value that no longer fits the type."
            );
            (
                quote! {
                    #[doc = #get_doc]
                    #vis fn #name(&self) -> ::core::result::Result<#ty, #krate::__private::MissingField> {
                        self.0.require::<#key_type>()
                    }
                },
                quote! {
                    #[doc = #mut_doc]
                    #vis fn #mutable(
                        &self,
                    ) -> ::core::result::Result<#krate::__private::FieldMut<'_, #data, #ty>, #krate::__private::MissingField> {
                        ::core::result::Result::Ok(self.0.field_mut::<#key_type>(self.#name()?))
                    }
                },
            )
        }
        Missing::Fallback(fallback) => {
            let default = fallback_fn(&fallback);
            let get_doc = format!(
                "`{plain}` (session key `\"{key}\"`); its default when the key has no value, \
                 or a value that no longer fits the type."
            );
            (
                quote! {
                    #[doc = #get_doc]
                    #vis fn #name(&self) -> #ty {
                        self.0.get_or_else::<#key_type>(#default)
                    }
                },
                quote! {
                    #[doc = #mut_doc]
                    #vis fn #mutable(&self) -> #krate::__private::FieldMut<'_, #data, #ty> {
                        self.0.field_mut::<#key_type>(self.#name())
                    }
                },
            )
        }
    };
    quote! {
        #getter

        #[doc = #set_doc]
        #vis fn #setter(&self, value: #ty) {
            self.0.set::<#key_type>(&value);
        }

        #mutable_accessor
    }
}
