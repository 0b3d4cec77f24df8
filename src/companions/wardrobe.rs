//! Which body category a garment belongs to, from the words of its description (pure).
//!
//! The scene analysis uses it for items a model reports without a category (or with one we do not know), and
//! the image prompt's layering filter for items stored as `other`. Whole words decide ("laptop bag" has the
//! word "laptop", not "top"), most specific first: underwear before full-body garments before outerwear
//! before tops and bottoms, footwear before legwear ("thigh-high boots" are boots).

/// Garments covering both underwear parts at once (lingerie sets): not a category of their own.
const UNDERWEAR_SET_WORDS: &[&str] = &["lingerie", "underwear"];

/// `(category, words)` in the order they are checked.
const CATEGORY_WORDS: &[(&str, &[&str])] = &[
    (
        "underwear_top",
        &["bra", "bralette", "brassiere", "bandeau", "bras"],
    ),
    (
        "underwear_bottom",
        &[
            "panties",
            "panty",
            "thong",
            "briefs",
            "boxers",
            "knickers",
            "g-string",
            "underpants",
        ],
    ),
    (
        "full_body",
        &[
            "dress", "sundress", "gown", "jumpsuit", "overalls", "romper", "kimono", "yukata",
            "bodysuit", "leotard", "swimsuit", "onesie", "robe", "bathrobe",
        ],
    ),
    (
        "outerwear",
        &[
            "hoodie",
            "sweatshirt",
            "jacket",
            "coat",
            "blazer",
            "cardigan",
            "sweater",
            "parka",
            "raincoat",
            "windbreaker",
            "trench",
            "poncho",
        ],
    ),
    (
        "top",
        &[
            "shirt",
            "t-shirt",
            "tshirt",
            "blouse",
            "top",
            "tank",
            "tee",
            "camisole",
            "polo",
            "tunic",
            "crop-top",
            "turtleneck",
            "vest",
        ],
    ),
    (
        "bottom",
        &[
            "shorts",
            "pants",
            "jeans",
            "skirt",
            "miniskirt",
            "leggings",
            "trousers",
            "sweatpants",
            "joggers",
            "chinos",
        ],
    ),
    (
        "footwear",
        &[
            "shoes",
            "shoe",
            "boots",
            "boot",
            "sneakers",
            "sneaker",
            "trainers",
            "heels",
            "sandals",
            "sandal",
            "slippers",
            "slipper",
            "loafers",
            "flats",
            "pumps",
            "flip-flops",
            "clogs",
        ],
    ),
    (
        "legwear",
        &[
            "socks",
            "sock",
            "stockings",
            "stocking",
            "tights",
            "pantyhose",
            "thigh-highs",
            "knee-highs",
            "leg-warmers",
        ],
    ),
];

/// Whole lower-case words of a description.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '-'))
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The outfit category of a garment, when its words say; `None` for accessories and anything unknown.
pub fn category_of(description: &str) -> Option<&'static str> {
    let words = words(description);
    CATEGORY_WORDS
        .iter()
        .find(|(_, list)| words.iter().any(|word| list.contains(&word.as_str())))
        .map(|(category, _)| *category)
}

/// True for sets covering both underwear parts ("black lingerie").
pub fn is_underwear_set(description: &str) -> bool {
    words(description)
        .iter()
        .any(|word| UNDERWEAR_SET_WORDS.contains(&word.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garments_are_placed_by_their_words() {
        assert_eq!(category_of("white T-shirt"), Some("top"));
        assert_eq!(category_of("blue jeans"), Some("bottom"));
        assert_eq!(category_of("red sundress"), Some("full_body"));
        assert_eq!(category_of("leather jacket"), Some("outerwear"));
        assert_eq!(category_of("lace bra"), Some("underwear_top"));
        assert_eq!(category_of("cotton panties"), Some("underwear_bottom"));
        assert_eq!(category_of("black thigh-high boots"), Some("footwear"));
        assert_eq!(category_of("striped socks"), Some("legwear"));
    }

    #[test]
    fn whole_words_only_and_unknowns_are_none() {
        assert_eq!(category_of("laptop bag"), None, "laptop is not a top");
        assert_eq!(category_of("silver necklace"), None);
        assert_eq!(category_of(""), None);
        assert!(is_underwear_set("black lingerie"));
        assert!(!is_underwear_set("lace bra"));
    }
}
