//! `#[derive(LabelSet)]` and `#[derive(LabelValue)]` for `prometheus-multiproc`.
//!
//! Use them through the core crate's `derive` feature, which re-exports both as
//! `prometheus_multiproc::{LabelSet, LabelValue}` (each name is then both the trait
//! and its derive); the generated code names the traits by their paths in that crate.
//! The documentation, with examples, is on the traits there.
//!
//! * `#[derive(LabelSet)]` on a struct with named fields: the field names are the
//!   label names (`#[label(rename = "name")]` on a field overrides one), in field
//!   order, and each field's type must implement `LabelValue`. Implements `LabelSet`
//!   and `NamedLabelSet`. Label names are checked here, at compile time, against
//!   `[a-zA-Z_][a-zA-Z0-9_]*` without a `__` prefix and for duplicates.
//! * `#[derive(LabelValue)]` on an enum without fields: each variant's value is its
//!   name **as written** (`Get` is `"Get"`, as prometheus-client's
//!   `EncodeLabelValue` writes it), unless the enum has
//!   `#[label(rename_all = "lowercase" | "UPPERCASE" | "snake_case" |
//!   "SCREAMING_SNAKE_CASE")]` or the variant `#[label(rename = "value")]`.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Attribute, Data, DeriveInput, Error, Fields, LitStr, parse_macro_input};

/// Implements `LabelSet` and `NamedLabelSet` for a struct with named fields; see the
/// crate docs.
#[proc_macro_derive(LabelSet, attributes(label))]
pub fn derive_label_set(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    label_set(&input).unwrap_or_else(Error::into_compile_error).into()
}

/// Implements `LabelValue` for an enum without fields; see the crate docs.
#[proc_macro_derive(LabelValue, attributes(label))]
pub fn derive_label_value(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    label_value(&input).unwrap_or_else(Error::into_compile_error).into()
}

/// What one `#[label(...)]` attribute list says.
#[derive(Default)]
struct LabelAttr {
    rename: Option<LitStr>,
    rename_all: Option<LitStr>,
}

/// Reads the `#[label(...)]` attributes of an item; `allowed` names the keys it takes.
fn label_attr(attrs: &[Attribute], allowed: &[&str]) -> syn::Result<LabelAttr> {
    let mut out = LabelAttr::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("label")) {
        attr.parse_nested_meta(|meta| {
            let key = meta.path.get_ident().map(ToString::to_string).unwrap_or_default();
            if !allowed.contains(&key.as_str()) {
                return Err(meta.error(format!("expected one of: {}", allowed.join(", "))));
            }
            let value: LitStr = meta.value()?.parse()?;
            let slot = if key == "rename" { &mut out.rename } else { &mut out.rename_all };
            if slot.replace(value).is_some() {
                return Err(meta.error(format!("`{key}` given twice")));
            }
            Ok(())
        })?;
    }
    Ok(out)
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`: the label names the core crate
/// accepts at declaration (the names a metric type reserves are checked there).
fn check_label_name(name: &str, span: Span) -> syn::Result<()> {
    let mut bytes = name.bytes();
    let valid = matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(Error::new(span, format!("label name {name:?} is not [a-zA-Z_][a-zA-Z0-9_]*")));
    }
    if name.starts_with("__") {
        return Err(Error::new(span, format!("label name {name:?} starts with `__`, reserved for Prometheus")));
    }
    Ok(())
}

fn label_set(input: &DeriveInput) -> syn::Result<TokenStream2> {
    label_attr(&input.attrs, &[])?;
    let Data::Struct(data) = &input.data else {
        return Err(Error::new_spanned(&input.ident, "#[derive(LabelSet)] needs a struct with named fields"));
    };
    let Fields::Named(fields) = &data.fields else {
        return Err(Error::new_spanned(&input.ident, "#[derive(LabelSet)] needs a struct with named fields"));
    };
    let mut names: Vec<String> = Vec::new();
    let mut values = Vec::new();
    let mut bufs = Vec::new();
    for (i, field) in fields.named.iter().enumerate() {
        let ident = field.ident.as_ref().expect("named fields have names");
        let attr = label_attr(&field.attrs, &["rename"])?;
        let (name, span) = match &attr.rename {
            Some(lit) => (lit.value(), lit.span()),
            None => (ident.unraw().to_string(), ident.span()),
        };
        check_label_name(&name, span)?;
        if names.contains(&name) {
            return Err(Error::new(span, format!("label name {name:?} given twice")));
        }
        names.push(name);
        let buf = format_ident!("__buf{}", i);
        // Spanned at the field's type, so that a type that is no label value is
        // reported there.
        values.push(quote_spanned! {field.ty.span()=>
            ::prometheus_multiproc::LabelValue::label_value(&self.#ident, &mut #buf)
        });
        bufs.push(buf);
    }
    let ty = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics ::prometheus_multiproc::LabelSet for #ty #ty_generics #where_clause {
            #[inline]
            fn with_values<__R>(&self, f: impl ::core::ops::FnOnce(&[&str]) -> __R) -> __R {
                #(let mut #bufs = ::prometheus_multiproc::LabelBuf::new();)*
                f(&[#(#values),*])
            }
        }
        impl #impl_generics ::prometheus_multiproc::NamedLabelSet for #ty #ty_generics #where_clause {
            const NAMES: &'static [&'static str] = &[#(#names),*];
        }
    })
}

/// A variant name under a `rename_all` rule.
fn rename_all(rule: &LitStr, name: &str) -> syn::Result<String> {
    let snake = || {
        let mut out = String::new();
        for (i, c) in name.chars().enumerate() {
            if c.is_uppercase() && i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        }
        out
    };
    Ok(match rule.value().as_str() {
        "lowercase" => name.to_lowercase(),
        "UPPERCASE" => name.to_uppercase(),
        "snake_case" => snake(),
        "SCREAMING_SNAKE_CASE" => snake().to_uppercase(),
        _ => {
            return Err(Error::new(
                rule.span(),
                "expected \"lowercase\", \"UPPERCASE\", \"snake_case\" or \"SCREAMING_SNAKE_CASE\"",
            ));
        }
    })
}

fn label_value(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let attr = label_attr(&input.attrs, &["rename_all"])?;
    let Data::Enum(data) = &input.data else {
        return Err(Error::new_spanned(
            &input.ident,
            "#[derive(LabelValue)] needs an enum whose variants have no fields",
        ));
    };
    let mut arms = Vec::new();
    for variant in &data.variants {
        if !matches!(variant.fields, Fields::Unit) {
            return Err(Error::new_spanned(variant, "#[derive(LabelValue)] needs variants without fields"));
        }
        let ident = &variant.ident;
        let written = ident.unraw().to_string();
        let value = match (label_attr(&variant.attrs, &["rename"])?.rename, &attr.rename_all) {
            (Some(lit), _) => lit.value(),
            (None, Some(rule)) => rename_all(rule, &written)?,
            (None, None) => written,
        };
        arms.push(quote! { Self::#ident => #value });
    }
    let ty = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let body = if arms.is_empty() {
        quote! { match *self {} }
    } else {
        quote! { match self { #(#arms,)* } }
    };
    Ok(quote! {
        impl #impl_generics ::prometheus_multiproc::LabelValue for #ty #ty_generics #where_clause {
            #[inline]
            fn label_value<'__a>(&'__a self, _: &'__a mut ::prometheus_multiproc::LabelBuf) -> &'__a str {
                #body
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_all_rules() {
        let rule = |r: &str, name: &str| rename_all(&LitStr::new(r, Span::call_site()), name).unwrap();
        assert_eq!(rule("snake_case", "NotFound"), "not_found");
        assert_eq!(rule("SCREAMING_SNAKE_CASE", "NotFound"), "NOT_FOUND");
        assert_eq!(rule("lowercase", "NotFound"), "notfound");
        assert_eq!(rule("UPPERCASE", "Get"), "GET");
        assert!(rename_all(&LitStr::new("kebab-case", Span::call_site()), "A").is_err());
    }

    #[test]
    fn label_names_are_checked_as_at_declaration() {
        let check = |n: &str| check_label_name(n, Span::call_site()).is_ok();
        assert!(check("method") && check("_x") && check("a1"));
        assert!(!check("__x") && !check("1a") && !check("a-b") && !check("") && !check("é"));
    }
}
