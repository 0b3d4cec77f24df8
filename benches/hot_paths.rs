//! Benchmarks of the CPU-bound hot paths: what every chat reply, every picture and every gallery page pays.
//! Run with `cargo bench`; results and how to read them: docs/performance.md.

use std::hint::black_box;
use std::io::Cursor;

use companion_hub::chat::prompt::{self, Turn};
use companion_hub::chat::render;
use companion_hub::companions::profile::{LiveState, Profile, WornItem};
use companion_hub::config::Config;
use companion_hub::images::prompt::scene;
use companion_hub::media::process;
use criterion::{Criterion, criterion_group, criterion_main};
use image::{DynamicImage, ImageBuffer, ImageFormat, Rgb};

fn profile() -> Profile {
    let mut profile = Profile::template();
    profile.name = "Mira".into();
    profile.user_appearance = "tall, short black hair, glasses".into();
    profile
}

fn state() -> LiveState {
    let worn = |category: &str, description: &str| WornItem {
        category: category.into(),
        description: description.into(),
    };
    LiveState {
        outfit: vec![
            worn("outerwear", "denim jacket"),
            worn("top", "white blouse"),
            worn("underwear_top", "black bra"),
            worn("bottom", "pleated skirt"),
            worn("footwear", "loafers"),
            worn("other", "silver bracelet"),
        ],
        location: "rooftop garden".into(),
        action: "watering plants".into(),
        expression: "smiling".into(),
        lighting: "golden hour".into(),
        visual_tags: vec!["wind".into(), "looking at viewer".into()],
        user_present: true,
    }
}

/// A typical Stable Diffusion answer: an 832×1216 PNG with detail (noise compresses and decodes like a photo).
fn generated_png() -> Vec<u8> {
    let mut seed = 0x2545_f491_u32;
    let image = ImageBuffer::from_fn(832, 1216, |x, y| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let noise = (seed & 0x1f) as u8;
        Rgb([
            (x % 256) as u8 ^ noise,
            (y % 256) as u8,
            ((x + y) % 256) as u8,
        ])
    });
    let mut bytes = Vec::new();
    DynamicImage::ImageRgb8(image)
        .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
        .expect("encode the benchmark picture");
    bytes
}

fn prompts(c: &mut Criterion) {
    let config = Config::from_vars(Vec::<(String, String)>::new()).expect("defaults");
    let (profile, state) = (profile(), state());
    c.bench_function("scene_prompt", |b| {
        b.iter(|| scene(black_box(&profile), black_box(&state), &config.images.anime))
    });
    let history: Vec<Turn> = (0..200)
        .map(|i| Turn {
            role: if i % 2 == 0 { "user" } else { "assistant" }.into(),
            content: "A sentence of an ordinary conversation, long enough to count. ".repeat(3),
            tokens: None,
        })
        .collect();
    // The message being answered, counted when it was stored (as every message is now).
    let now = Turn {
        role: "user".into(),
        content: "What now?".into(),
        tokens: Some(prompt::estimate_tokens("What now?")),
    };
    // Messages written before token counts were stored: every prompt counts the history again.
    c.bench_function("chat_prompt_200_turns", |b| {
        b.iter(|| {
            let system = prompt::system(&profile, &state, "Alex");
            prompt::build(system, black_box(&history), &now, 4096, 300)
        })
    });
    // Messages as they are written now, each with its count: only the system prompt is counted.
    let counted: Vec<Turn> = history
        .iter()
        .map(|turn| Turn {
            tokens: Some(prompt::estimate_tokens(&turn.content)),
            ..turn.clone()
        })
        .collect();
    c.bench_function("chat_prompt_200_stored_counts", |b| {
        b.iter(|| {
            let system = prompt::system(&profile, &state, "Alex");
            prompt::build(system, black_box(&counted), &now, 4096, 300)
        })
    });
}

fn rendering(c: &mut Criterion) {
    let reply = "*smiles* Of course! **Here** is what I think:\n\n".repeat(20);
    c.bench_function("render_reply_1kb", |b| {
        b.iter(|| render::to_html(black_box(&reply)))
    });
}

fn pictures(c: &mut Criterion) {
    let png = generated_png();
    let mut group = c.benchmark_group("pictures");
    group.sample_size(10);
    group.bench_function("fit_with_thumbnail_832x1216_png", |b| {
        b.iter(|| process::fit_with_thumbnail(black_box(&png), 1920, 480).expect("valid"))
    });
    group.finish();
}

criterion_group!(benches, prompts, rendering, pictures);
criterion_main!(benches);
