//! Label sets: what [`Family::labels`](crate::Family::labels) and
//! [`TypedFamily`](crate::TypedFamily) look children up by.
//!
//! * [`LabelValue`]: one value that can name itself as a string: `str`, `String` and
//!   the other string types, the integers, `bool` (`"true"`/`"false"`), `Option` of
//!   any of them (`None` is `""`, which Prometheus treats as an absent label), and
//!   enums with `#[derive(LabelValue)]` (feature `derive`).
//! * [`LabelSet`]: an ordered list of values: arrays, slices and `Vec`s of
//!   `AsRef<str>`, tuples of up to eight [`LabelValue`]s, and structs with
//!   `#[derive(LabelSet)]`.
//! * [`NamedLabelSet`]: a label set whose type also knows its label names (the
//!   derive implements it), so that a [`TypedFamily`](crate::TypedFamily) takes its
//!   names from the type.
//!
//! **No allocation on a lookup.** A label set hands its values to a closure as
//! `&[&str]` built on the stack: integers below 1000 are named from a table built at
//! compile time, larger ones formatted into a [`LabelBuf`] on the stack (with `itoa`),
//! strings are borrowed. Arrays, slices and `Vec`s of strings are looked up in place,
//! with no `&[&str]` to build; only their [`LabelSet::with_values`] collects a slice or
//! `Vec` of more than [`MAX_INLINE_LABELS`] values into a `Vec`.

use std::borrow::Cow;
use std::rc::Rc;
use std::sync::Arc;

/// Slices and `Vec`s of up to this many values are looked up without allocating.
pub const MAX_INLINE_LABELS: usize = 8;

/// Stack room for one formatted value (any integer fits), handed to
/// [`LabelValue::label_value`]. Creating one costs nothing (it is uninitialised memory).
#[derive(Default)]
pub struct LabelBuf(itoa::Buffer);

impl LabelBuf {
    /// An empty buffer.
    #[inline]
    pub fn new() -> LabelBuf {
        LabelBuf(itoa::Buffer::new())
    }
}

impl std::fmt::Debug for LabelBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LabelBuf")
    }
}

/// One label value: a type that can name itself as a string, borrowing `buf` if it
/// has to format itself.
///
/// Implemented for the string types, the integers (decimal, as `Display` writes
/// them), `bool` (`"true"`/`"false"`, as Rust writes them; Python's `str(True)` is
/// `"True"`, so a Rust and a Python worker sharing a directory must agree on one
/// spelling), `Option<T>` (`None` is the empty value), references, and fieldless enums
/// with `#[derive(LabelValue)]`. Implement it for a type of your own the same way:
///
/// ```
/// use prometheus_multiproc::{LabelBuf, LabelValue};
/// struct Shard(u16);
/// impl LabelValue for Shard {
///     fn label_value<'a>(&'a self, buf: &'a mut LabelBuf) -> &'a str {
///         self.0.label_value(buf)
///     }
/// }
/// let mut buf = LabelBuf::new();
/// assert_eq!(Shard(7).label_value(&mut buf), "7");
/// assert_eq!(true.label_value(&mut LabelBuf::new()), "true");
/// assert_eq!(Some("x").label_value(&mut LabelBuf::new()), "x");
/// ```
pub trait LabelValue {
    /// The value as a string (borrowed from `self`, from `buf`, or `'static`).
    fn label_value<'a>(&'a self, buf: &'a mut LabelBuf) -> &'a str;
}

impl LabelValue for str {
    #[inline]
    fn label_value<'a>(&'a self, _: &'a mut LabelBuf) -> &'a str {
        self
    }
}

macro_rules! string_values {
    ($($t:ty),*) => {$(
        impl LabelValue for $t {
            #[inline]
            fn label_value<'a>(&'a self, _: &'a mut LabelBuf) -> &'a str {
                self
            }
        }
    )*};
}
string_values!(String, Box<str>, Arc<str>, Rc<str>, Cow<'_, str>);

macro_rules! integer_values {
    ($($t:ty),*) => {$(
        impl LabelValue for $t {
            #[inline]
            fn label_value<'a>(&'a self, buf: &'a mut LabelBuf) -> &'a str {
                match usize::try_from(*self) {
                    Ok(n) if n < SMALL => small(n),
                    _ => buf.0.format(*self),
                }
            }
        }
    )*};
}
integer_values!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize);

/// Integers below this are named from [`SMALL_NAMES`], a table built at compile time:
/// no formatting (`itoa` is a call that writes the digits into the buffer, which the
/// lookup then reads back), for the integers label values mostly are (HTTP statuses,
/// small counts).
const SMALL: usize = 1000;

/// The decimal form of every integer below [`SMALL`].
static SMALL_NAMES: [&str; SMALL] = {
    // `000` to `999`, three digits each.
    const DIGITS: &[u8; 3 * SMALL] = &{
        let mut bytes = [0; 3 * SMALL];
        let mut n = 0;
        while n < SMALL {
            bytes[3 * n] = b'0' + (n / 100) as u8;
            bytes[3 * n + 1] = b'0' + (n / 10 % 10) as u8;
            bytes[3 * n + 2] = b'0' + (n % 10) as u8;
            n += 1;
        }
        bytes
    };
    let mut names = [""; SMALL];
    let mut n = 0;
    while n < SMALL {
        let len = 1 + (n >= 10) as usize + (n >= 100) as usize;
        let (_, tail) = DIGITS.split_at(3 * n + 3 - len);
        names[n] = match std::str::from_utf8(tail.split_at(len).0) {
            Ok(name) => name,
            Err(_) => panic!("digits are ASCII"),
        };
        n += 1;
    }
    names
};

/// The decimal form of `n` (below [`SMALL`]).
#[inline]
fn small(n: usize) -> &'static str {
    SMALL_NAMES[n]
}

impl LabelValue for bool {
    #[inline]
    fn label_value<'a>(&'a self, _: &'a mut LabelBuf) -> &'a str {
        if *self { "true" } else { "false" }
    }
}

impl<T: LabelValue> LabelValue for Option<T> {
    #[inline]
    fn label_value<'a>(&'a self, buf: &'a mut LabelBuf) -> &'a str {
        match self {
            Some(value) => value.label_value(buf),
            None => "",
        }
    }
}

impl<T: LabelValue + ?Sized> LabelValue for &T {
    #[inline]
    fn label_value<'a>(&'a self, buf: &'a mut LabelBuf) -> &'a str {
        (**self).label_value(buf)
    }
}

/// An ordered list of label values, in the order of the family's label names.
///
/// Implemented for arrays, slices and `Vec`s of any `AsRef<str>`, for `()` (no labels),
/// for tuples of up to eight [`LabelValue`]s (which may mix strings, integers, bools
/// and enums), for references to any of these, and for structs with
/// `#[derive(LabelSet)]` (feature `derive`).
///
/// ```
/// use prometheus_multiproc::LabelSet;
/// assert_eq!(["GET", "200"].with_values(|v| v.join(",")), "GET,200");
/// assert_eq!(("GET", 200u16, true).with_values(|v| v.join(",")), "GET,200,true");
/// assert_eq!(vec![String::from("a"), String::from("b")].with_values(|v| v.join(",")), "a,b");
/// ```
///
/// # `#[derive(LabelSet)]` (feature `derive`)
///
/// On a struct with named fields whose types implement [`LabelValue`]: the field names
/// are the label names, in field order (`#[label(rename = "...")]` on a field gives it
/// another one); the derive also implements [`NamedLabelSet`], so the struct can
/// declare a [`TypedFamily`](crate::TypedFamily). Label names are checked at compile
/// time (`[a-zA-Z_][a-zA-Z0-9_]*`, no `__` prefix, each once); the names a metric type
/// reserves (`le`, `quantile`, `pid`) are refused when the family is declared.
///
/// `#[derive(LabelValue)]` on an enum without fields names each variant **as
/// written** (`Post` is `"Post"`, as prometheus-client's `EncodeLabelValue` writes it),
/// unless the enum says `#[label(rename_all = "lowercase")]` (or `"UPPERCASE"`,
/// `"snake_case"`, `"SCREAMING_SNAKE_CASE"`) or the variant `#[label(rename = "...")]`.
///
#[cfg_attr(feature = "derive", doc = "```")]
#[cfg_attr(not(feature = "derive"), doc = "```ignore")]
/// use prometheus_multiproc::{LabelSet, LabelValue, NamedLabelSet};
///
/// #[derive(LabelValue)]
/// #[label(rename_all = "snake_case")]
/// enum Outcome { Ok, NotFound, #[label(rename = "5xx")] ServerError }
///
/// #[derive(LabelSet)]
/// struct Request<'a> { route: &'a str, #[label(rename = "code")] status: u16, outcome: Outcome, cached: bool }
///
/// assert_eq!(Request::NAMES, ["route", "code", "outcome", "cached"]);
/// let request = Request { route: "/a", status: 404, outcome: Outcome::NotFound, cached: false };
/// assert_eq!(request.with_values(|v| v.join(",")), "/a,404,not_found,false");
/// assert_eq!(Outcome::ServerError.label_value(&mut Default::default()), "5xx");
/// ```
pub trait LabelSet {
    /// Calls `f` with the values, each as a string.
    fn with_values<R>(&self, f: impl FnOnce(&[&str]) -> R) -> R;

    /// Hands the values to `visitor`: through [`LabelSet::with_values`], except that
    /// arrays, slices and `Vec`s of strings hand over themselves, with no `&[&str]` to
    /// build (copying an array of `&str` into another cost about 1 ns of a 13 ns lookup).
    /// Sealed: only this crate can call or override it, since no other can name
    /// [`Visitor`].
    #[doc(hidden)]
    #[inline]
    fn visit_values<V: Visitor>(&self, visitor: V) -> V::Output {
        self.with_values(|values| visitor.visit(values))
    }
}

pub(crate) use sealed::Visitor;

mod sealed {
    /// What [`LabelSet::visit_values`](super::LabelSet::visit_values) hands a label
    /// set's values to, as a slice of any string type. Public in a private module: a
    /// bound other crates cannot name.
    pub trait Visitor {
        /// What the visit returns.
        type Output;
        /// Called once, with the values.
        fn visit<S: AsRef<str>>(self, values: &[S]) -> Self::Output;
    }
}

/// A [`LabelSet`] whose type knows its label names: what a
/// [`TypedFamily`](crate::TypedFamily) is declared with. `#[derive(LabelSet)]`
/// implements it from the field names.
///
/// [`LabelSet::with_values`] must hand out exactly `NAMES.len()` values, in the same
/// order; a set that does not is treated as a wrong label count (its writes dropped
/// and counted), never as another series.
pub trait NamedLabelSet: LabelSet {
    /// The label names, in the order of the values.
    const NAMES: &'static [&'static str];
}

impl<S: AsRef<str>, const N: usize> LabelSet for [S; N] {
    #[inline]
    fn with_values<R>(&self, f: impl FnOnce(&[&str]) -> R) -> R {
        f(&self.each_ref().map(AsRef::as_ref))
    }

    #[inline]
    fn visit_values<V: Visitor>(&self, visitor: V) -> V::Output {
        visitor.visit(self)
    }
}

impl<S: AsRef<str>> LabelSet for [S] {
    #[inline]
    fn with_values<R>(&self, f: impl FnOnce(&[&str]) -> R) -> R {
        if self.len() <= MAX_INLINE_LABELS {
            let mut values = [""; MAX_INLINE_LABELS];
            for (slot, value) in values.iter_mut().zip(self) {
                *slot = value.as_ref();
            }
            f(&values[..self.len()])
        } else {
            f(&self.iter().map(AsRef::as_ref).collect::<Vec<&str>>())
        }
    }

    #[inline]
    fn visit_values<V: Visitor>(&self, visitor: V) -> V::Output {
        visitor.visit(self)
    }
}

impl<S: AsRef<str>> LabelSet for Vec<S> {
    #[inline]
    fn with_values<R>(&self, f: impl FnOnce(&[&str]) -> R) -> R {
        self.as_slice().with_values(f)
    }

    #[inline]
    fn visit_values<V: Visitor>(&self, visitor: V) -> V::Output {
        visitor.visit(self)
    }
}

impl<L: LabelSet + ?Sized> LabelSet for &L {
    #[inline]
    fn with_values<R>(&self, f: impl FnOnce(&[&str]) -> R) -> R {
        (**self).with_values(f)
    }

    #[inline]
    fn visit_values<V: Visitor>(&self, visitor: V) -> V::Output {
        (**self).visit_values(visitor)
    }
}

impl LabelSet for () {
    #[inline]
    fn with_values<R>(&self, f: impl FnOnce(&[&str]) -> R) -> R {
        f(&[])
    }
}

macro_rules! tuple_sets {
    ($(($($t:ident $v:ident $b:ident),+))*) => {$(
        impl<$($t: LabelValue),+> LabelSet for ($($t,)+) {
            #[inline]
            fn with_values<R>(&self, f: impl FnOnce(&[&str]) -> R) -> R {
                let ($($v,)+) = self;
                $(let mut $b = LabelBuf::new();)+
                f(&[$($v.label_value(&mut $b)),+])
            }
        }
    )*};
}
tuple_sets! {
    (A a ba)
    (A a ba, B b bb)
    (A a ba, B b bb, C c bc)
    (A a ba, B b bb, C c bc, D d bd)
    (A a ba, B b bb, C c bc, D d bd, E e be)
    (A a ba, B b bb, C c bc, D d bd, E e be, F f bf)
    (A a ba, B b bb, C c bc, D d bd, E e be, F f bf, G g bg)
    (A a ba, B b bb, C c bc, D d bd, E e be, F f bf, G g bg, H h bh)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(set: &(impl LabelSet + ?Sized)) -> Vec<String> {
        set.with_values(|v| v.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn integers_are_written_in_decimal_without_allocating() {
        assert_eq!(
            values(&(0u8, -1i8, u64::MAX, i128::MIN)),
            ["0", "-1", "18446744073709551615", &i128::MIN.to_string()]
        );
        assert_eq!(values(&(usize::MAX, isize::MIN)), [usize::MAX.to_string(), isize::MIN.to_string()]);
    }

    #[test]
    fn small_integers_are_named_from_the_table_as_display_writes_them() {
        for n in 0..SMALL + 10 {
            assert_eq!(
                values(&(n, n as u16, n as i64, -(n as i32))),
                [n.to_string(), n.to_string(), n.to_string(), (-(n as i32)).to_string()]
            );
        }
    }

    #[test]
    fn strings_bools_options_and_references_name_themselves() {
        let owned = String::from("o");
        let cow: Cow<'_, str> = Cow::Borrowed("c");
        let arc: Arc<str> = Arc::from("a");
        assert_eq!(values(&(&owned, cow, arc, true, false)), ["o", "c", "a", "true", "false"]);
        assert_eq!(values(&(Some(3u8), None::<&str>, &&"r")), ["3", "", "r"]);
    }

    #[test]
    fn arrays_slices_and_vecs_of_any_length_keep_their_order() {
        assert_eq!(values(&["a", "b"]), ["a", "b"]);
        assert_eq!(values(&()), Vec::<String>::new());
        let many: Vec<String> = (0..MAX_INLINE_LABELS + 3).map(|i| i.to_string()).collect();
        assert_eq!(values(&many), many);
        assert_eq!(values(&many[..MAX_INLINE_LABELS]), many[..MAX_INLINE_LABELS]);
        assert_eq!(values(&many[..0]), Vec::<String>::new());
    }
}
