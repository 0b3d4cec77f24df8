//! The choices a companion profile offers: `(key, label)` pairs, keys as stored and sent by the API.
//!
//! Strict lists (art style, looks, garments, colours) accept only their keys. Preset lists (occupation,
//! personality, relationship, hair colour, speech style …) are suggestions: any short text is accepted
//! as a custom value, so a custom value equal to a key simply is that preset.

/// A list of choices.
pub type Options = &'static [(&'static str, &'static str)];

/// Art styles (select the image checkpoint and quality tags).
pub const ART_STYLES: Options = &[("anime", "Anime"), ("realistic", "Realistic")];
/// Gender presentation.
pub const GENDERS: Options = &[
    ("female", "Female"),
    ("male", "Male"),
    ("non_binary", "Non-binary"),
];
/// Ethnicities and fantasy species.
pub const ETHNICITIES: Options = &[
    ("asian", "Asian"),
    ("white", "White"),
    ("latin", "Latina / Latino"),
    ("black", "Black"),
    ("arab", "Arab"),
    ("indian", "Indian"),
    ("elf", "Elf (fantasy)"),
    ("demon", "Demon (fantasy)"),
    ("catfolk", "Catfolk (fantasy)"),
];
/// Skin tones; blue and green are for fantasy species.
pub const SKIN_TONES: Options = &[
    ("pale", "Pale"),
    ("fair", "Fair"),
    ("tan", "Tan"),
    ("olive", "Olive"),
    ("dark", "Dark"),
    ("deep", "Deep"),
    ("blue", "Blue (fantasy)"),
    ("green", "Green (fantasy)"),
];
/// Hair base styles.
pub const HAIR_STYLES: Options = &[
    ("loose", "Loose"),
    ("ponytail", "Ponytail"),
    ("twin_tails", "Twin-tails"),
    ("bun", "Bun"),
    ("braids", "Braids"),
    ("bob", "Bob"),
    ("short", "Short"),
];
/// Hair modifiers.
pub const HAIR_MODIFIERS: Options = &[("none", "None"), ("parted", "Parted"), ("bangs", "Bangs")];
/// Hair textures.
pub const HAIR_TEXTURES: Options = &[
    ("default", "Default"),
    ("straight", "Straight"),
    ("wavy", "Wavy"),
    ("curly", "Curly"),
];
/// Hair colour presets (custom text allowed).
pub const HAIR_COLOURS: Options = &[
    ("blonde", "Blonde"),
    ("black", "Black"),
    ("brown", "Brown"),
    ("red", "Red"),
    ("pink", "Pink"),
    ("gray", "Gray"),
    ("blue", "Blue"),
    ("green", "Green"),
    ("purple", "Purple"),
];
/// Eye colours.
pub const EYE_COLOURS: Options = &[
    ("blue", "Blue"),
    ("green", "Green"),
    ("brown", "Brown"),
    ("red", "Red"),
    ("purple", "Purple"),
    ("yellow", "Yellow"),
    ("black", "Black"),
    ("pale", "Pale"),
];
/// Body types.
pub const BODY_TYPES: Options = &[
    ("slim", "Slim"),
    ("athletic", "Athletic"),
    ("curvy", "Curvy"),
    ("heavy", "Heavy"),
    ("muscular", "Muscular"),
];
/// Heights.
pub const HEIGHTS: Options = &[
    ("petite", "Petite"),
    ("short", "Short"),
    ("average", "Average"),
    ("tall", "Tall"),
    ("very_tall", "Very tall"),
];
/// Occupation presets (custom text allowed).
pub const OCCUPATIONS: Options = &[
    ("student", "Student"),
    ("personal_trainer", "Personal trainer"),
    ("nurse", "Nurse"),
    ("office_worker", "Office worker"),
    ("barista", "Barista"),
    ("gamer", "Gamer"),
    ("musician", "Musician"),
    ("teacher", "Teacher"),
    ("artist", "Artist"),
    ("engineer", "Engineer"),
];
/// Personality archetypes (custom text allowed).
pub const PERSONALITIES: Options = &[
    ("adventurous", "Adventurous"),
    ("shy", "Shy"),
    ("confident", "Confident"),
    ("playful", "Playful"),
    ("caring", "Caring"),
    ("sarcastic", "Sarcastic"),
    ("intellectual", "Intellectual"),
];
/// Relationships to the user (custom text allowed).
pub const RELATIONSHIPS: Options = &[
    ("friend", "Friend"),
    ("neighbor", "Neighbor"),
    ("childhood_friend", "Childhood friend"),
    ("partner", "Partner"),
    ("coworker", "Coworker"),
    ("mentor", "Mentor"),
    ("stranger", "Stranger"),
];
/// Interest presets (custom tags allowed).
pub const INTERESTS: Options = &[
    ("reading", "Reading"),
    ("gaming", "Gaming"),
    ("cooking", "Cooking"),
    ("yoga", "Yoga"),
    ("music", "Music"),
    ("art", "Art"),
    ("photography", "Photography"),
    ("hiking", "Hiking"),
    ("dancing", "Dancing"),
    ("movies", "Movies"),
    ("anime", "Anime"),
    ("travel", "Travel"),
];
/// Speech styles (custom text allowed).
pub const SPEECH_STYLES: Options = &[
    ("casual", "Casual"),
    ("formal", "Formal"),
    ("playful", "Playful"),
    ("sarcastic", "Sarcastic"),
    ("quirky", "Quirky"),
    ("sweet", "Sweet"),
    ("shy", "Shy"),
];
/// How the companion starts conversations.
pub const INITIATION_STYLES: Options = &[
    ("bold", "Bold and forward"),
    ("subtle", "Subtle and hinting"),
    ("reactive", "Waiting and reactive"),
    ("direct", "Direct and honest"),
];
/// Confidence levels.
pub const CONFIDENCE_LEVELS: Options = &[
    ("very_shy", "Very shy"),
    ("somewhat_shy", "Somewhat shy"),
    ("balanced", "Balanced"),
    ("confident", "Confident"),
    ("overconfident", "Overconfident"),
];
/// Ways of showing affection.
pub const AFFECTION_STYLES: Options = &[
    ("subtle", "Subtle"),
    ("bold", "Bold"),
    ("playful", "Playful"),
    ("romantic", "Romantic"),
    ("awkward", "Awkward"),
];
/// Humour.
pub const HUMOUR_STYLES: Options = &[
    ("dry", "Dry and sarcastic"),
    ("teasing", "Playful and teasing"),
    ("wholesome", "Wholesome"),
    ("dark", "Dark"),
    ("goofy", "Goofy"),
];
/// How fast the relationship develops.
pub const PACES: Options = &[
    ("slow_burn", "Slow burn"),
    ("cautious", "Cautious"),
    ("natural", "Natural flow"),
    ("eager", "Eager"),
];
/// Garment colours.
pub const COLOURS: Options = &[
    ("white", "White"),
    ("black", "Black"),
    ("gray", "Gray"),
    ("red", "Red"),
    ("pink", "Pink"),
    ("purple", "Purple"),
    ("blue", "Blue"),
    ("green", "Green"),
    ("yellow", "Yellow"),
    ("orange", "Orange"),
    ("brown", "Brown"),
    ("beige", "Beige"),
];

/// Outfit categories, in wearing order, with their garments.
pub const OUTFIT_CATEGORIES: &[(&str, &str, Options)] = &[
    (
        "outerwear",
        "Outerwear",
        &[
            ("hoodie", "Hoodie"),
            ("jacket", "Jacket"),
            ("blazer", "Blazer"),
            ("cardigan", "Cardigan"),
            ("coat", "Coat"),
            ("sweater", "Sweater"),
            ("sweatshirt", "Sweatshirt"),
        ],
    ),
    (
        "top",
        "Top",
        &[
            ("t_shirt", "T-shirt"),
            ("tank_top", "Tank top"),
            ("crop_top", "Crop top"),
            ("blouse", "Blouse"),
            ("shirt", "Shirt"),
            ("turtleneck", "Turtleneck"),
            ("camisole", "Camisole"),
        ],
    ),
    (
        "bottom",
        "Bottom",
        &[
            ("jeans", "Jeans"),
            ("pants", "Pants"),
            ("skirt", "Skirt"),
            ("shorts", "Shorts"),
            ("leggings", "Leggings"),
            ("sweatpants", "Sweatpants"),
        ],
    ),
    (
        "full_body",
        "Full body",
        &[
            ("dress", "Dress"),
            ("jumpsuit", "Jumpsuit"),
            ("overalls", "Overalls"),
            ("robe", "Robe"),
            ("suit", "Suit"),
        ],
    ),
    (
        "underwear_top",
        "Underwear top",
        &[
            ("bra", "Bra"),
            ("sports_bra", "Sports bra"),
            ("undershirt", "Undershirt"),
        ],
    ),
    (
        "underwear_bottom",
        "Underwear bottom",
        &[
            ("panties", "Panties"),
            ("boxers", "Boxers"),
            ("briefs", "Briefs"),
        ],
    ),
    (
        "legwear",
        "Legwear",
        &[
            ("socks", "Socks"),
            ("stockings", "Stockings"),
            ("tights", "Tights"),
            ("knee_highs", "Knee-highs"),
        ],
    ),
    (
        "footwear",
        "Footwear",
        &[
            ("sneakers", "Sneakers"),
            ("heels", "Heels"),
            ("boots", "Boots"),
            ("sandals", "Sandals"),
            ("flats", "Flats"),
            ("slippers", "Slippers"),
        ],
    ),
];

/// The label of `key` in `options`, or the key itself (custom values are their own label).
pub fn label(options: Options, key: &str) -> &str {
    options
        .iter()
        .find(|(k, _)| *k == key)
        .map_or(key, |(_, label)| label)
}

/// True when `key` is one of `options`.
pub fn contains(options: Options, key: &str) -> bool {
    options.iter().any(|(k, _)| *k == key)
}

/// The garments of an outfit category.
pub fn garments(category: &str) -> Options {
    OUTFIT_CATEGORIES
        .iter()
        .find(|(key, _, _)| *key == category)
        .map_or(&[], |(_, _, items)| items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_within_every_list() {
        let lists: &[Options] = &[
            ART_STYLES,
            GENDERS,
            ETHNICITIES,
            SKIN_TONES,
            HAIR_STYLES,
            HAIR_MODIFIERS,
            HAIR_TEXTURES,
            HAIR_COLOURS,
            EYE_COLOURS,
            BODY_TYPES,
            HEIGHTS,
            OCCUPATIONS,
            PERSONALITIES,
            RELATIONSHIPS,
            INTERESTS,
            SPEECH_STYLES,
            INITIATION_STYLES,
            CONFIDENCE_LEVELS,
            AFFECTION_STYLES,
            HUMOUR_STYLES,
            PACES,
            COLOURS,
        ];
        for list in lists
            .iter()
            .chain(OUTFIT_CATEGORIES.iter().map(|(_, _, items)| items))
        {
            let mut keys: Vec<&str> = list.iter().map(|(k, _)| *k).collect();
            keys.sort_unstable();
            keys.dedup();
            assert_eq!(keys.len(), list.len());
        }
    }

    #[test]
    fn labels_fall_back_to_custom_text() {
        assert_eq!(label(OCCUPATIONS, "barista"), "Barista");
        assert_eq!(label(OCCUPATIONS, "Astronaut"), "Astronaut");
        assert_eq!(garments("footwear").len(), 6);
        assert!(garments("hats").is_empty());
    }
}
