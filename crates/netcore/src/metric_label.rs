//! [`metric_label_enum!`](crate::metric_label_enum): declares an enum whose variants are the
//! values of a Prometheus label.

/// Declares a `Copy` enum whose variants are the values of one Prometheus label: each variant
/// is written with its label text, and the macro adds `as_str` (a `const fn` with the enum's
/// visibility), which returns that text, and
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
