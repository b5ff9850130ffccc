//! Enums whose variants have fixed texts: the values `/metrics` labels carry (what dashboards
//! and alerts match on), the reasons logs and `/status` print. A leaf: the domain modules
//! declare their enums with `label_values!` and know nothing of Prometheus; `metrics`
//! encodes them.

/// Defines an enum whose every variant has an exact text, with `ALL`, `as_str` and `Display`.
macro_rules! label_values {
    ($(#[$meta:meta])* $vis:vis enum $name:ident {
        $($(#[$variant_meta:meta])* $variant:ident => $text:literal,)+
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $($(#[$variant_meta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            #[allow(dead_code, reason = "not every label enum is enumerated")]
            pub const ALL: &[Self] = &[$(Self::$variant),+];

            /// The text of the value.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use label_values;

label_values! {
    /// The bounds of the trust model — each a flag with a default — as `limit_hits` counts them
    /// when one refuses something.
    pub enum Limit {
        /// A signer's pending prices in the pool.
        PendingPerSigner => "pending_per_signer",
        /// Peers' prices waiting for this node's observation or its fallback turn.
        CosignQueue => "cosign_queue",
        /// Publishes waiting for the network task.
        CommandQueue => "command_queue",
        /// New prices per origin and pair per minute.
        OriginRate => "origin_rate",
        /// Messages kept until the member list is read.
        HeldUntilMembersKnown => "held_until_members_known",
        /// Refused messages per peer per minute.
        RefusedPerPeer => "refused_per_peer",
        /// Connections (in total, per peer, pending).
        Connections => "connections",
        /// Received messages per peer waiting for validation.
        ValidationQueue => "validation_queue",
        /// Ids of one writer's stored notices waiting to be looked up in the database.
        NoticeQueue => "notice_queue",
    }
}

#[cfg(test)]
mod tests {
    label_values! {
        enum Color {
            Red => "red",
            DarkBlue => "dark_blue",
        }
    }

    #[test]
    fn each_variant_has_its_text() {
        assert_eq!(Color::ALL, &[Color::Red, Color::DarkBlue]);
        assert_eq!(Color::DarkBlue.as_str(), "dark_blue");
        assert_eq!(Color::Red.to_string(), "red");
    }
}
