//! The benchmark's plot as PNG: the SVG plotters drew, rasterised with resvg and the
//! machine's fonts. (Plotters' own bitmap backend needs a font feature that, unified by
//! Cargo across the workspace, would change how the trainer's SVG plots lay out text.)

use resvg::{tiny_skia, usvg};

/// Sans-serif families tried, in order, for text the SVG asks in `sans-serif`.
const SANS_SERIF: [&str; 4] = ["DejaVu Sans", "Liberation Sans", "Arial", "Noto Sans"];

/// PNG bytes of `svg` at its own size. Text is drawn with a system font when the machine
/// has one; without any, the picture is drawn without its text.
pub fn svg_to_png(svg: &str) -> anyhow::Result<Vec<u8>> {
    let mut options = usvg::Options::default();
    {
        let fonts = options.fontdb_mut();
        fonts.load_system_fonts();
        let installed = |name: &str| fonts.faces().any(|f| f.families.iter().any(|(family, _)| family == name));
        if let Some(family) = SANS_SERIF.iter().find(|name| installed(name)) {
            fonts.set_sans_serif_family(*family);
        }
    }
    let tree = usvg::Tree::from_str(svg, &options)?;
    let size = tree.size().to_int_size();
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| anyhow::anyhow!("an empty picture ({}x{})", size.width(), size.height()))?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    Ok(pixmap.encode_png()?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_small_svg_becomes_a_png_of_its_size() {
        let svg = r#"<svg xmlns="http://www.w3.org/2000/svg" width="20" height="10"><rect width="10" height="10" fill="red"/><text x="0" y="9" font-family="sans-serif">a</text></svg>"#;
        let png = super::svg_to_png(svg).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // IHDR: width and height, big-endian, right after the signature and chunk header.
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 20);
        assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 10);
    }
}
