//! Rendering a collector's repeat scrapes from the body of one before.
//!
//! From one scrape to the next, a long-lived collector's body changes in its values
//! only, as long as the same series are exposed: the names, labels, help texts and
//! their escaping come out the same. Writing them again is most of the work of a
//! render, and reading them (from strings spread across the heap, after a scrape has
//! streamed every file's values through the caches) most of its time. So
//! [`encode_scrape`] (which [`render`] calls) keeps, for the scrapes of one collector
//! and for each format and escaping asked for (up to four), a body without its values
//! (a [`Template`]), and fills the values of a later scrape into it when that scrape
//! has the same families and samples, by name, help, type and labels: then the body
//! is byte for byte the one a full render writes. See [`State`] for which body is kept.
//!
//! A sample matches when its name and its labels are the very strings the template
//! holds (one comparison of addresses: the collector hands out its interned strings,
//! and the template keeps them alive, so an address cannot have been reused), or else
//! equal ones. Anything else (a series added or gone, a scrape edited by its caller)
//! makes a full render, and the render after it a new template.
//!
//! [`render`]: super::render
//! [`encode_scrape`]: super::encode_scrape

use std::sync::Arc;

use super::text::Names;
use super::{Escaping, Format};
use crate::collect::{Memo, MetricFamily, MetricType};
use crate::format::float::write_go_float;

/// How many formats and escapings a collector keeps a body for (the most recently
/// used ones): a Prometheus server asks for one, a person with `curl` perhaps another.
const KEPT: usize = 4;

/// What the exposition keeps in a collector's [`Memo`]: for each format and escaping
/// asked for (at most [`KEPT`], the most recently used first), its [`State`].
struct Kept(Vec<(Format, Escaping, State)>);

/// What is kept for one format and escaping.
#[derive(Clone)]
enum State {
    /// A body was written in full (the first, or one that did not fit the template):
    /// the next one is kept as the template. So a collector scraped once keeps none,
    /// and series that change at every scrape make a template every other render.
    Written,
    /// The last body kept.
    Template(Arc<Template>),
}

#[cfg(test)]
thread_local! {
    /// How many bodies this thread filled into a template.
    pub(crate) static FILLED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Appends the body of `families` (scraped by the collector that keeps `memo`) in
/// `format` and `escaping` to `out`: filled into the template kept for them if it
/// fits, else written whole (see [`State`]).
pub(crate) fn encode_kept(
    memo: &Memo,
    families: &[MetricFamily],
    format: Format,
    escaping: Escaping,
    out: &mut String,
) {
    let kept = memo.get().and_then(|kept| kept.downcast::<Kept>().ok());
    let list = kept.as_ref().map_or(&[][..], |kept| &kept.0[..]);
    let at = list.iter().position(|&(f, e, _)| (f, e) == (format, escaping));
    let filled = match at.map(|i| &list[i].2) {
        Some(State::Template(template)) if template.fits(families) => {
            template.fill(families, out);
            #[cfg(test)]
            FILLED.with(|n| n.set(n.get() + 1));
            true
        }
        _ => false,
    };
    // The usual repeat scrape: filled into the most recently used template, and
    // nothing kept changes.
    if filled && at == Some(0) {
        return;
    }
    let mut list = list.to_vec();
    let state = at.map(|i| list.remove(i).2);
    let next = match state {
        Some(state) if filled => state,
        Some(State::Written) => match Template::write(families, format, escaping, out) {
            Some(template) => State::Template(Arc::new(template)),
            None => State::Written,
        },
        None | Some(State::Template(_)) => {
            super::encode(families, format, escaping, out);
            State::Written
        }
    };
    list.insert(0, (format, escaping, next));
    list.truncate(KEPT);
    memo.set(Arc::new(Kept(list)));
}

/// A sample's labels, as [`crate::collect::Sample`] holds them.
type Labels = Arc<[(Arc<str>, Arc<str>)]>;

/// A body without its values, and what it was written from.
#[derive(Debug)]
pub(crate) struct Template {
    /// Each family's name, help, type and number of samples.
    families: Vec<(Arc<str>, Arc<str>, MetricType, usize)>,
    /// Each sample's name and labels, family by family.
    samples: Vec<(Arc<str>, Labels)>,
    /// The body without the values.
    text: String,
    /// Where each value goes in `text`, in order, and the (family, sample) it is of.
    values: Vec<(u32, u32, u32)>,
}

impl Template {
    /// Appends the body of `families` to `out`, as [`super::encode`] does, and returns
    /// it as a template (none when a value's place in the body without its values is
    /// 4 GiB or more).
    fn write(families: &[MetricFamily], format: Format, escaping: Escaping, out: &mut String) -> Option<Template> {
        let start = out.len();
        let mut names = Names::default();
        names.values = Some(Vec::new());
        match format {
            Format::Text => super::text::encode_text_with(families, escaping, out, &mut names),
            Format::OpenMetrics => super::openmetrics::encode_openmetrics_with(families, escaping, out, &mut names),
        }
        let body = &out[start..];
        let spans = names.values.unwrap_or_default();
        let mut text = String::with_capacity(body.len());
        let mut values = Vec::with_capacity(spans.len());
        let mut at = 0;
        for value in spans {
            text.push_str(&body[at..value.start - start]);
            let (family, sample) = value.sample;
            values.push((u32::try_from(text.len()).ok()?, u32::try_from(family).ok()?, u32::try_from(sample).ok()?));
            at = value.end - start;
        }
        text.push_str(&body[at..]);
        Some(Template {
            families: families.iter().map(|f| (f.name.clone(), f.help.clone(), f.kind, f.samples.len())).collect(),
            samples: families.iter().flat_map(|f| &f.samples).map(|s| (s.name.clone(), s.labels.clone())).collect(),
            text,
            values,
        })
    }

    /// Whether `families` would be written as this template was (in its format and
    /// escaping), but for the values.
    fn fits(&self, families: &[MetricFamily]) -> bool {
        fn same<T: ?Sized + PartialEq>(a: &Arc<T>, b: &Arc<T>) -> bool {
            Arc::ptr_eq(a, b) || **a == **b
        }
        self.families.len() == families.len()
            && self.families.iter().zip(families).all(|((name, help, kind, samples), f)| {
                same(name, &f.name) && same(help, &f.help) && *kind == f.kind && *samples == f.samples.len()
            })
            && self
                .samples
                .iter()
                .zip(families.iter().flat_map(|f| &f.samples))
                .all(|((name, labels), s)| same(name, &s.name) && same(labels, &s.labels))
    }

    /// Appends the body of `families` (which [`Template::fits`]) to `out`.
    fn fill(&self, families: &[MetricFamily], out: &mut String) {
        out.reserve(self.text.len() + 8 * self.values.len());
        let mut at = 0;
        for &(to, family, sample) in &self.values {
            let to = to as usize;
            out.push_str(&self.text[at..to]);
            write_go_float(out, families[family as usize].samples[sample as usize].value);
            at = to;
        }
        out.push_str(&self.text[at..]);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use crate::collect::{Collector, Sample, Scrape};
    use crate::expose::render;
    use crate::{GaugeMode, Opts, Registry, WorkerId};

    /// The Accept headers of each format and escaping.
    const ACCEPTS: [Option<&str>; 5] = [
        None,
        Some("text/plain; version=1.0.0; escaping=allow-utf-8"),
        Some("text/plain; version=1.0.0; escaping=values"),
        Some("application/openmetrics-text; version=1.0.0; escaping=dots"),
        Some("application/openmetrics-text; version=1.0.0; escaping=allow-utf-8"),
    ];

    /// The body of `scrape` rendered in full, as by a scrape no collector made.
    fn full(scrape: &Scrape, accept: Option<&str>) -> Vec<u8> {
        let bare = Scrape { memo: None, ..scrape.clone() };
        render(&bare, accept, None).body
    }

    /// How many bodies this thread filled into a template since it last made a
    /// collector with [`collector`].
    fn filled() -> usize {
        super::FILLED.with(std::cell::Cell::get)
    }

    fn collector(dir: &std::path::Path) -> Collector {
        super::FILLED.with(|n| n.set(0));
        Collector::new(dir).unwrap()
    }

    /// Writers of every type, with names and label values that every escaping and
    /// format writes differently, and values of every spelling.
    struct Writers {
        _registries: Vec<Registry>,
        counters: Vec<crate::Family<crate::Counter>>,
        gauges: Vec<crate::Family<crate::Gauge>>,
        histograms: Vec<crate::Family<crate::Histogram>>,
    }

    fn writers(dir: &std::path::Path) -> Writers {
        let mut w = Writers { _registries: vec![], counters: vec![], gauges: vec![], histograms: vec![] };
        for id in ["1", "2"] {
            let r = Registry::builder().dir(dir).worker_id(WorkerId::new(id).unwrap()).build().unwrap();
            w.counters.push(r.counter_family(Opts::new("req_total", "Requests \"served\"\\\n."), &["path"]).unwrap());
            w.gauges.push(r.gauge_family(Opts::new("temp", "T."), GaugeMode::All, &["room"]).unwrap());
            w.histograms.push(r.histogram_family(Opts::new("lat_seconds", "L."), &[0.1, 1.0], &["m"]).unwrap());
            w._registries.push(r);
        }
        w
    }

    fn write(w: &Writers, round: u32, series: u32) {
        let x = f64::from(round);
        for k in 0..series {
            let label = format!("/a\"b\\c\n{k}");
            for c in &w.counters {
                c.get(&[&label]).unwrap().inc_by(x * 0.1 + f64::from(k));
            }
        }
        for (i, g) in w.gauges.iter().enumerate() {
            let value = [f64::NAN, f64::INFINITY, -0.0, 1e21, 2.5e-7][(round as usize + i) % 5];
            g.get(&["kitchen"]).unwrap().set(value);
        }
        for h in &w.histograms {
            h.get(&["GET"]).unwrap().observe(x * 0.3);
        }
    }

    /// Gives the first family (the counter) a name and a label name outside the legacy
    /// character set, which every escaping writes differently (our writers refuse
    /// them; Python's 0.26 writes them), in new strings each time.
    fn utf8_names(scrape: &mut Scrape) {
        let family = &mut scrape.families[0];
        family.name = family.name.replace("req", "req.µ").into();
        for sample in &mut family.samples {
            sample.name = sample.name.replace("req", "req.µ").into();
            sample.labels = sample.labels.iter().map(|(k, v)| (k.replace("path", "pa-th").into(), v.clone())).collect();
        }
    }

    #[test]
    fn repeat_renders_of_a_collectors_scrapes_are_the_full_render_byte_for_byte() {
        for accept in ACCEPTS {
            let dir = tempfile::tempdir().unwrap();
            let w = writers(dir.path());
            let collector = collector(dir.path());
            for round in 0..5 {
                write(&w, round, 20);
                let mut scrape = collector.collect().unwrap();
                utf8_names(&mut scrape);
                let body = render(&scrape, accept, None).body;
                assert_eq!(body, full(&scrape, accept), "{accept:?}, round {round}");
                let utf8 = accept.is_some_and(|a| a.contains("allow-utf-8"));
                assert_eq!(String::from_utf8(body).unwrap().contains("req.µ"), utf8, "{accept:?}");
            }
            // No template at the first render, one made at the second, filled since.
            assert_eq!(filled(), 3, "{accept:?}");
        }
    }

    #[test]
    fn a_gzipped_body_filled_from_the_template_unzips_to_the_full_render() {
        let dir = tempfile::tempdir().unwrap();
        let w = writers(dir.path());
        let collector = collector(dir.path());
        for round in 0..3 {
            write(&w, round, 5);
            let scrape = collector.collect().unwrap();
            let page = render(&scrape, None, Some("gzip"));
            let mut body = Vec::new();
            flate2::read::GzDecoder::new(&page.body[..]).read_to_end(&mut body).unwrap();
            assert_eq!(body, full(&scrape, None), "round {round}");
        }
        assert_eq!(filled(), 1);
    }

    #[test]
    fn a_series_added_another_format_or_an_edited_scrape_is_rendered_in_full() {
        let dir = tempfile::tempdir().unwrap();
        let w = writers(dir.path());
        let collector = collector(dir.path());
        let check = |scrape: &Scrape, accept: Option<&str>, fills: usize, what: &str| {
            assert_eq!(render(scrape, accept, None).body, full(scrape, accept), "{what}");
            assert_eq!(filled(), fills, "{what}");
        };
        write(&w, 0, 3);
        check(&collector.collect().unwrap(), None, 0, "first render");
        check(&collector.collect().unwrap(), None, 0, "the template is made");
        check(&collector.collect().unwrap(), None, 1, "filled");
        write(&w, 1, 4);
        check(&collector.collect().unwrap(), None, 1, "a series added");
        check(&collector.collect().unwrap(), None, 1, "the template made again");
        check(&collector.collect().unwrap(), None, 2, "filled again");
        check(&collector.collect().unwrap(), ACCEPTS[3], 2, "another format");
        check(&collector.collect().unwrap(), ACCEPTS[4], 2, "another escaping");
        check(&collector.collect().unwrap(), ACCEPTS[4], 2, "its template made");
        check(&collector.collect().unwrap(), ACCEPTS[4], 3, "filled in that one");
        check(&collector.collect().unwrap(), None, 4, "the first one's template is kept");

        // A caller's edits: other labels, a sample more, a family renamed, help changed.
        type Edit = fn(&mut Scrape);
        let edits: [(&str, Edit); 4] = [
            ("labels", |s| {
                let sample = &mut s.families[0].samples[0];
                sample.labels = vec![("path".into(), "/edited".into())].into();
            }),
            ("a sample more", |s| {
                let sample = s.families[0].samples[0].clone();
                s.families[0].samples.push(Sample { value: 7.0, ..sample });
            }),
            ("renamed", |s| s.families[1].name = "renamed".into()),
            ("help", |s| s.families[2].help = "Other help.".into()),
        ];
        for (what, edit) in edits {
            let mut scrape = collector.collect().unwrap();
            edit(&mut scrape);
            let before = filled();
            check(&scrape, ACCEPTS[4], before, what);
            // The next body is kept as the template, and filled after.
            check(&collector.collect().unwrap(), ACCEPTS[4], before, what);
            check(&collector.collect().unwrap(), ACCEPTS[4], before + 1, what);
        }
    }

    #[test]
    fn alternating_formats_each_fill_their_own_template() {
        let dir = tempfile::tempdir().unwrap();
        let w = writers(dir.path());
        let collector = collector(dir.path());
        for round in 0..8 {
            write(&w, round, 3);
            let scrape = collector.collect().unwrap();
            for accept in [None, ACCEPTS[3]] {
                assert_eq!(render(&scrape, accept, None).body, full(&scrape, accept), "round {round}, {accept:?}");
            }
        }
        // Written, then kept, then filled: from the third round on, in both.
        assert_eq!(filled(), 12);
    }

    #[test]
    fn the_template_in_use_outlives_four_other_formats_asked_for_once() {
        let dir = tempfile::tempdir().unwrap();
        let w = writers(dir.path());
        write(&w, 0, 3);
        let collector = collector(dir.path());
        let render_one = |accept: Option<&str>| {
            let scrape = collector.collect().unwrap();
            assert_eq!(render(&scrape, accept, None).body, full(&scrape, accept), "{accept:?}");
        };
        render_one(None);
        render_one(None);
        // Each other format once (four of them: as many as are kept), the first
        // format in between: it is the most recently used each time, never evicted.
        for other in &ACCEPTS[1..] {
            render_one(*other);
            render_one(None);
        }
        assert_eq!(filled(), 4);
    }

    #[test]
    fn samples_moved_to_families_of_their_own_and_text_before_the_body_are_filled_in_place() {
        use crate::collect::{MetricFamily, MetricType};
        // Text moves `_created`, `_gcount` and `_gsum` samples after their family's
        // other samples, into gauge families of their own; the body is appended to
        // text already in the buffer.
        let scrape = |v: f64| {
            let sample = |name: &str, labels: &[(&str, &str)], value: f64| Sample {
                name: name.into(),
                labels: labels.iter().map(|&(k, v)| (k.into(), v.into())).collect(),
                value,
            };
            let family = MetricFamily {
                name: "x".into(),
                help: "X.".into(),
                kind: MetricType::Gauge,
                samples: vec![
                    sample("x_gsum", &[], v + 1.0),
                    sample("x", &[("a", "1")], v + 2.0),
                    sample("x_created", &[("a", "1")], v + 3.0),
                    sample("x", &[("a", "2")], v + 4.0),
                    sample("x_gcount", &[], v + 5.0),
                ],
            };
            Scrape { families: vec![family.clone(), MetricFamily { name: "y".into(), ..family }], ..Scrape::default() }
        };
        let memo = std::sync::Arc::new(crate::collect::Memo::default());
        super::FILLED.with(|n| n.set(0));
        for (round, format) in [crate::expose::Format::Text, crate::expose::Format::OpenMetrics]
            .into_iter()
            .flat_map(|f| [f; 4])
            .enumerate()
        {
            let scrape = Scrape { memo: Some(memo.clone()), ..scrape(round as f64 * 10.0) };
            let (mut ours, mut expected) = (String::from("before\n"), String::from("before\n"));
            crate::expose::encode_scrape(&scrape, format, crate::expose::Escaping::Underscores, &mut ours);
            crate::expose::encode(&scrape.families, format, crate::expose::Escaping::Underscores, &mut expected);
            assert_eq!(ours, expected, "round {round}");
            assert!(ours.contains("x_created{a=\"1\"} "), "{ours}");
        }
        assert_eq!(filled(), 4);
    }

    #[test]
    fn equal_strings_at_other_addresses_still_fit_the_template() {
        let dir = tempfile::tempdir().unwrap();
        let w = writers(dir.path());
        write(&w, 0, 3);
        let collector = collector(dir.path());
        render(&collector.collect().unwrap(), None, None);
        render(&collector.collect().unwrap(), None, None);
        // Every name, help and label copied to new strings, as process metrics are
        // made afresh at each scrape.
        let mut scrape = collector.collect().unwrap();
        for family in &mut scrape.families {
            family.name = family.name.to_string().into();
            family.help = family.help.to_string().into();
            for sample in &mut family.samples {
                sample.name = sample.name.to_string().into();
                sample.labels =
                    sample.labels.iter().map(|(k, v)| (k.to_string().into(), v.to_string().into())).collect();
            }
        }
        assert_eq!(render(&scrape, None, None).body, full(&scrape, None));
        assert_eq!(filled(), 1);
    }
}
