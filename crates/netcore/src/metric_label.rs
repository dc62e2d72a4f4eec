//! [`metric_label_enum!`](crate::metric_label_enum): declares an enum whose variants are the
//! values of a Prometheus label. [`metric_label_value!`](crate::metric_label_value): makes a
//! type declared elsewhere, which already has `as_str` or wraps such a type, a label value.

/// Declares a `Copy` enum whose variants are the values of one Prometheus label: each variant
/// is written with its label text, and the macro adds `as_str` (a `const fn` with the enum's
/// visibility), which returns that text, a `Display` impl that writes it, and
/// the `prometheus_client::encoding::EncodeLabelValue` impl that writes it. The enum can then
/// be a field of a `#[derive(EncodeLabelSet)]` struct.
///
/// Attributes before the enum (doc comments, `#[non_exhaustive]`, more derives) and before
/// each variant (doc comments) are kept. The macro derives `Clone, Copy, Debug, PartialEq, Eq,
/// Hash`: do not derive those again. The caller needs no prometheus-client dependency of its
/// own for the macro (only for the metrics it registers).
///
/// ```
/// netcore::metric_label_enum! {
///     /// Why a dial failed: the `reason` label of `dial_failures_total`.
///     #[non_exhaustive]
///     pub enum DialFailure {
///         /// Nothing listened.
///         Refused => "refused",
///         /// No answer in time.
///         TimedOut => "timed_out",
///     }
/// }
///
/// assert_eq!(DialFailure::TimedOut.as_str(), "timed_out");
/// assert_eq!(DialFailure::Refused.to_string(), "refused");
/// ```
#[macro_export]
macro_rules! metric_label_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $(
                $(#[$variant_meta:meta])*
                $variant:ident => $label:literal
            ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        $vis enum $name {
            $(
                $(#[$variant_meta])*
                $variant,
            )+
        }

        impl $name {
            /// The label value.
            $vis const fn as_str(&self) -> &'static str {
                match self {
                    $(Self::$variant => $label,)+
                }
            }
        }

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        $crate::metric_label_value!($name);
    };
}

/// Implements `prometheus_client::encoding::EncodeLabelValue` for types declared elsewhere
/// (domain types that are more than a label, or wrappers of another crate's type), so that
/// they can be fields of a `#[derive(EncodeLabelSet)]` struct:
///
/// - `metric_label_value!(A, B);` for types with an `as_str(&self)` (or `as_str(self)` on a
///   `Copy` type) returning the label text;
/// - `metric_label_value!(newtype Origin => as_str);` for a tuple struct whose field has such
///   an `as_str`;
/// - `metric_label_value!(newtype Protocol => Display);` for a tuple struct whose field's
///   `Display` output is the label text.
///
/// For an enum that exists only as a label, [`metric_label_enum!`](crate::metric_label_enum)
/// declares it and includes this impl.
///
/// ```
/// #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
/// pub enum Lane {
///     High,
///     Low,
/// }
///
/// impl Lane {
///     pub const fn as_str(self) -> &'static str {
///         match self {
///             Self::High => "high",
///             Self::Low => "low",
///         }
///     }
/// }
///
/// /// A lane as the `queue` label.
/// #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
/// struct Queue(Lane);
///
/// netcore::metric_label_value!(Lane);
/// netcore::metric_label_value!(newtype Queue => as_str);
/// ```
#[macro_export]
macro_rules! metric_label_value {
    (newtype $name:ty => as_str) => {
        impl $crate::__private::prometheus_client::encoding::EncodeLabelValue for $name {
            fn encode(
                &self,
                encoder: &mut $crate::__private::prometheus_client::encoding::LabelValueEncoder<
                    '_,
                >,
            ) -> ::core::result::Result<(), ::core::fmt::Error> {
                ::core::fmt::Write::write_str(encoder, self.0.as_str())
            }
        }
    };
    (newtype $name:ty => Display) => {
        impl $crate::__private::prometheus_client::encoding::EncodeLabelValue for $name {
            fn encode(
                &self,
                encoder: &mut $crate::__private::prometheus_client::encoding::LabelValueEncoder<
                    '_,
                >,
            ) -> ::core::result::Result<(), ::core::fmt::Error> {
                ::core::fmt::Write::write_fmt(encoder, ::core::format_args!("{}", self.0))
            }
        }
    };
    ($($name:ty),+ $(,)?) => {
        $(
            impl $crate::__private::prometheus_client::encoding::EncodeLabelValue for $name {
                fn encode(
                    &self,
                    encoder: &mut $crate::__private::prometheus_client::encoding::LabelValueEncoder<
                        '_,
                    >,
                ) -> ::core::result::Result<(), ::core::fmt::Error> {
                    ::core::fmt::Write::write_str(encoder, self.as_str())
                }
            }
        )+
    };
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::EncodeLabelSet;
    use prometheus_client::encoding::text::encode;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::registry::Registry;

    crate::metric_label_enum! {
        /// A label for the test.
        #[non_exhaustive]
        pub(crate) enum Colour {
            /// The first.
            Red => "red",
            /// The second, with a multi-word label.
            DeepBlue => "deep_blue",
        }
    }

    #[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
    struct Labels {
        colour: Colour,
    }

    /// A type declared elsewhere, with its own `as_str`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    struct Shade(bool);

    impl Shade {
        const fn as_str(self) -> &'static str {
            if self.0 { "dark" } else { "light" }
        }
    }

    /// Wrappers of types with `as_str` and with `Display`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    struct Tone(Shade);
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    struct Number(u8);

    crate::metric_label_value!(Shade);
    crate::metric_label_value!(newtype Tone => as_str);
    crate::metric_label_value!(newtype Number => Display);

    #[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
    struct OtherLabels {
        shade: Shade,
        tone: Tone,
        number: Number,
    }

    /// `Display` writes the label text too.
    #[test]
    fn variants_display_as_their_label_text() {
        assert_eq!(Colour::DeepBlue.to_string(), "deep_blue");
    }

    /// Each form of `metric_label_value!` writes the text its type gives.
    #[test]
    fn label_values_encode_through_as_str_or_display() {
        let mut registry = Registry::default();
        let family = Family::<OtherLabels, Counter>::default();
        registry.register("mix", "Mixes", family.clone());
        family
            .get_or_create(&OtherLabels {
                shade: Shade(true),
                tone: Tone(Shade(false)),
                number: Number(7),
            })
            .inc();

        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(r#"mix_total{shade="dark",tone="light",number="7"} 1"#),
            "{text}"
        );
    }

    /// `as_str` gives each variant's text, and the encoded registry carries the same text.
    #[test]
    fn variants_encode_as_their_label_text() {
        assert_eq!(Colour::Red.as_str(), "red");
        assert_eq!(Colour::DeepBlue.as_str(), "deep_blue");

        let mut registry = Registry::default();
        let family = Family::<Labels, Counter>::default();
        registry.register("paint", "Paint by colour", family.clone());
        family
            .get_or_create(&Labels {
                colour: Colour::Red,
            })
            .inc();
        family
            .get_or_create(&Labels {
                colour: Colour::DeepBlue,
            })
            .inc_by(2);

        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(text.contains(r#"paint_total{colour="red"} 1"#), "{text}");
        assert!(
            text.contains(r#"paint_total{colour="deep_blue"} 2"#),
            "{text}"
        );
    }
}
