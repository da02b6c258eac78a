//! The merge: Python's `MultiProcessCollector.merge(files, accumulate=True)`, on
//! interned samples. Files in, families out; what it keeps between merges (its plan)
//! changes no result.
//!
//! Python's rules, which this reproduces bit for bit:
//!
//! 1. A family's type and help come from the first entry (in file order, then entry
//!    order) that names it; its gauge mode from the **last** gauge file that names it.
//! 2. Samples are accumulated in file order, then entry order:
//!    * counters, summaries, histogram `_sum` (and any sample of another type that
//!      lands in such a family): `0.0 + v1 + v2 + …`;
//!    * gauges by mode, with the fold rules of `format::fold` (which compaction's
//!      archives follow too). `all`/`liveall` keep one sample per writer (the `pid`
//!      label), the last value written winning. The other modes drop every `pid`
//!      label, then `min`/`max` keep the first value unless a later one is `<`/`>` it
//!      (so a NaN seen first sticks and one seen later is ignored), `sum` adds from
//!      `0.0`, and `mostrecent` takes the value whose timestamp is strictly greater
//!      than the best so far (starting from `0.0`: a series never `set()` is omitted);
//!    * histogram buckets (samples with `le`) add up per (labels without `le`, bound);
//!      bounds are compared as floats (`-0.0` and `0.0` are one bucket, printed as
//!      the first one seen).
//! 3. Output, per family: label groups in the order they were first *assigned*, each
//!    with its samples in insertion order. For histograms, each group of buckets (in
//!    order of first appearance) then appends, to its label group, the buckets in
//!    ascending bound, cumulative, named `FAMILY_bucket`, and `FAMILY_count` = the
//!    `+Inf` total (overwriting in place a stored sample of that name, if any).
//!
//! In two steps. A [`Plan`] places every sample from the entries alone: its series'
//! slot (or bucket) and the fold rule of its values, and the output's order. Then the
//! values are folded into the slots, in file order and then entry order, by one or
//! more threads each owning a range of the slots, so the sums are those of a single
//! thread bit for bit. The plan is kept for the next merge while the files' entries are
//! the same.

use std::sync::Arc;

use hashbrown::HashMap;

use super::model::{MetricFamily, MetricType, Sample};
use super::table::{Epoch, Le, Str, Tables};
use crate::format::fold::Fold;
use crate::format::names::GaugeMode;
use crate::region::ReadMap;

/// One file's contribution, in merge order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileInput<'a> {
    /// The type its name gives.
    pub(crate) typ: MetricType,
    /// Its gauge mode, for gauge files.
    pub(crate) mode: Option<GaugeMode>,
    /// The families it names, in order of first mention, each with the key of that
    /// first mention (for the help text).
    pub(crate) families: &'a [(u32, u32)],
    /// The sample of each entry.
    pub(crate) samples: &'a [u32],
    /// Where each entry's value (and a gauge file's timestamp) is.
    pub(crate) values: Values<'a>,
    /// The epoch of the file's parsed entries: while it and the number of entries stay
    /// the same, so does every entry's sample (entries are only ever appended).
    pub(crate) epoch: Epoch,
}

/// Where a file's values are.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Values<'a> {
    /// Read already: the value of each entry, and the timestamp of each entry of a
    /// gauge file (empty for other files, whose timestamps Python ignores).
    Read { values: &'a [f64], timestamps: &'a [f64] },
    /// In a mapping, loaded by the merge: each entry's value at its offset, and a gauge
    /// file's timestamp in the 8 bytes after it.
    Mapped { map: &'a ReadMap, offsets: &'a [u32] },
}

impl Values<'_> {
    /// Whether the values are loaded from a mapping by the merge.
    pub(crate) fn is_mapped(&self) -> bool {
        matches!(self, Values::Mapped { .. })
    }
}

impl FileInput<'_> {
    /// The timestamp of entry `i` (0 in files other than gauges).
    fn timestamp(&self, i: usize) -> f64 {
        if self.typ != MetricType::Gauge {
            return 0.0;
        }
        match self.values {
            Values::Read { timestamps, .. } => timestamps.get(i).copied().unwrap_or(0.0),
            Values::Mapped { map, offsets } => {
                offsets.get(i).and_then(|&off| map.load_u64(off as usize + 8)).map_or(0.0, f64::from_bits)
            }
        }
    }
}

/// A file the merge cannot use (Python would fail the whole scrape on it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unmergeable {
    /// Index of the file in the input.
    pub(crate) file: usize,
    /// The histogram family concerned.
    pub(crate) family: String,
    /// The `le` text that is not a number.
    pub(crate) le: String,
}

const NONE: u32 = u32::MAX;

/// During planning, a sample's bucket target is marked with this bit (bucket sums are
/// numbered after the slots once every slot is known).
const BUCKET: u32 = 1 << 31;

/// How a value goes into its accumulator: the fold rule of its series (see
/// `format::fold`), with [`Acc::ts`] as the seen-yet mark of `Min` and `Max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Apply {
    Add,
    Set,
    Min,
    Max,
    Recent,
}

/// What every value of a sample does: `apply` it to accumulator `at` (`NONE` for a
/// sample not placed, whose values change nothing: a `mostrecent` series never set).
#[derive(Debug, Clone, Copy)]
struct Op {
    apply: Apply,
    at: u32,
}

const UNPLACED: Op = Op { apply: Apply::Add, at: NONE };

/// A running value: a slot's or a bucket's.
#[derive(Debug, Clone, Copy, Default)]
struct Acc {
    value: f64,
    /// The timestamp of the value (`Recent`); 1 once a first value was taken (`Min`,
    /// `Max`).
    ts: f64,
}

impl Acc {
    #[inline]
    fn apply(&mut self, apply: Apply, value: f64, ts: impl FnOnce() -> f64) {
        match apply {
            Apply::Add => self.value += value,
            Apply::Set => self.value = value,
            Apply::Min | Apply::Max if self.ts == 0.0 => *self = Acc { value, ts: 1.0 },
            Apply::Min => {
                if value < self.value {
                    self.value = value;
                }
            }
            Apply::Max => {
                if value > self.value {
                    self.value = value;
                }
            }
            Apply::Recent => {
                let ts = ts();
                if self.ts < ts {
                    *self = Acc { value, ts };
                }
            }
        }
    }
}

/// What an output slot holds.
#[derive(Debug, Clone, Copy)]
enum SlotKind {
    /// An interned sample.
    Sample(u32),
    /// A cumulative bucket: its labels in `Plan::bucket_labels` (those of the bucket
    /// group, with the `le` of the sample whose bound was seen first).
    Bucket(u32),
    /// `FAMILY_count` for the label set.
    Count(u32),
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    kind: SlotKind,
    next: u32,
}

#[derive(Debug, Clone, Copy)]
struct Group {
    first: u32,
    last: u32,
    next: u32,
}

/// A bucket being planned: the first sample that named it and the next bucket of the
/// same label group.
#[derive(Debug, Clone, Copy)]
struct BucketPlan {
    sample: u32,
    next: u32,
}

#[derive(Debug)]
struct Family {
    name: u32,
    typ: MetricType,
    help: Str,
    mode: GaugeMode,
    first_group: u32,
    last_group: u32,
    /// Bucket groups (label set without `le` → first/last bucket), first appearance order.
    bucket_groups: Vec<(u32, u32, u32)>,
    /// `NAME_bucket` and `NAME_count`, made with the plan so that every scrape's samples
    /// share them (an exposition compares them by address, see `expose::template`).
    bucket_name: Str,
    count_name: Str,
}

/// A histogram bucket group's cumulative output: its bucket sums in ascending bound
/// (`Plan::sorted[start..end]`), the slots they go to (`first_slot` and on), and the
/// slot that takes the total (`FAMILY_count`).
#[derive(Debug, Clone, Copy)]
struct Cumulative {
    start: u32,
    end: u32,
    first_slot: u32,
    count_slot: u32,
}

/// The shape of a merge's output, and where each sample's values go: everything but
/// the values. It depends on the files' entries only (and, for `mostrecent` gauges, on
/// which timestamps are set), so while they are unchanged the next merge reuses it.
#[derive(Debug, Default)]
struct Plan {
    /// What the plan was made for: the tables' epoch, then each file's entries' epoch
    /// and count, in merge order. Empty while there is no plan.
    key: Vec<(Epoch, usize)>,
    /// Whether the plan depends on nothing but the key (not so with `mostrecent`
    /// gauges, whose series show only once set).
    reusable: bool,
    families: Vec<Family>,
    slots: Vec<Slot>,
    groups: Vec<Group>,
    /// Every sample's op.
    ops: Vec<Op>,
    /// The slots made for samples (the first ones): accumulators `0..accumulated` are
    /// theirs, those after are the bucket sums.
    accumulated: usize,
    /// The number of entries that go to each accumulator.
    weights: Vec<u32>,
    cumulative: Vec<Cumulative>,
    /// Bucket sums (accumulator indices), by group and in ascending bound.
    sorted: Vec<u32>,
    /// The labels of each cumulative bucket slot.
    bucket_labels: Vec<Arc<[(Str, Str)]>>,
}

/// A merge's buffers and its [`Plan`], kept from one merge to the next: a repeat
/// scrape of unchanged files reuses the plan and allocates little.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    plan: Plan,
    family_of: Vec<u32>,
    slot_of: Vec<u32>,
    bucket_of: Vec<u32>,
    buckets: Vec<BucketPlan>,
    group_of: HashMap<(u32, u32), u32>,
    bucket_group_of: HashMap<(u32, u32), usize>,
    slot_weights: Vec<u32>,
    bucket_weights: Vec<u32>,
    acc: Vec<Acc>,
    out: Vec<f64>,
    /// The slot of each sample of the output, in output order.
    order: Vec<u32>,
}

/// Merges `files` (in order) into families, with up to `threads` threads adding up the
/// values.
///
/// The values of each series are folded in file order, then entry order, whatever the
/// number of threads: each thread takes a range of the series, and reads every file for
/// them. The output is bit-identical to a single thread's.
///
/// # Errors
/// [`Unmergeable`] naming the first file holding a histogram bucket whose `le` is not a
/// number; the caller drops that file and merges again.
pub(crate) fn merge(
    tables: &Tables,
    files: &[FileInput<'_>],
    scratch: &mut Scratch,
    threads: usize,
) -> Result<Vec<MetricFamily>, Unmergeable> {
    let key = std::iter::once((tables.epoch(), 0)).chain(files.iter().map(|f| (f.epoch, f.samples.len())));
    if !scratch.plan.reusable || !scratch.plan.key.iter().copied().eq(key.clone()) {
        scratch.plan.key.clear();
        let planned = Planner { tables, s: scratch }.run(files);
        scratch.reset();
        planned?;
        scratch.plan.key.extend(key);
    }
    let Scratch { plan, acc, out, order, .. } = scratch;
    // The samples first, their values after: making them touches every series' shared
    // strings (their counts), which the last scrape left in the caches and adding up
    // the values would evict.
    let mut families = shape(tables, plan, order);
    accumulate(plan, files, acc, threads);
    fill(plan, acc, out, order, &mut families);
    Ok(families)
}

impl Scratch {
    /// Clears what planning marked in the lookup vectors (kept, sized, between merges).
    fn reset(&mut self) {
        for slot in &self.plan.slots {
            if let SlotKind::Sample(id) = slot.kind {
                self.slot_of[id as usize] = NONE;
            }
        }
        self.bucket_of.iter_mut().for_each(|b| *b = NONE);
        self.family_of.iter_mut().for_each(|f| *f = NONE);
        self.buckets.clear();
        self.group_of.clear();
        self.bucket_group_of.clear();
        self.slot_weights.clear();
        self.bucket_weights.clear();
    }
}

/// Makes the [`Plan`] of a merge: Python's rules, but for the values.
struct Planner<'t, 's> {
    tables: &'t Tables,
    s: &'s mut Scratch,
}

impl Planner<'_, '_> {
    fn run(mut self, files: &[FileInput<'_>]) -> Result<(), Unmergeable> {
        let t = self.tables;
        self.s.slot_of.resize(t.sample_count(), NONE);
        self.s.bucket_of.resize(t.bucket_count(), NONE);
        self.s.family_of.resize(t.name_count(), NONE);
        let plan = &mut self.s.plan;
        plan.families.clear();
        plan.slots.clear();
        plan.groups.clear();
        plan.cumulative.clear();
        plan.sorted.clear();
        plan.bucket_labels.clear();
        plan.ops.clear();
        plan.ops.resize(t.sample_count(), UNPLACED);
        // Room for a slot and a label group per sample, at most one each: made one by
        // one, they would grow (and a fresh collector's `group_of` rehash) about a dozen
        // times over a first scrape of 10,000 series.
        let samples = t.sample_count();
        plan.slots.reserve(samples);
        plan.groups.reserve(samples);
        self.s.slot_weights.reserve(samples);
        self.s.group_of.reserve(samples);

        // Type and help from the first mention, mode from the last gauge file.
        for file in files {
            for &(family, key) in file.families {
                let idx = match self.s.family_of[family as usize] {
                    NONE => {
                        let plan = &mut self.s.plan;
                        self.s.family_of[family as usize] = plan.families.len() as u32;
                        let name = t.name(family);
                        plan.families.push(Family {
                            name: family,
                            typ: file.typ,
                            help: t.key(key).help.clone(),
                            mode: GaugeMode::All,
                            first_group: NONE,
                            last_group: NONE,
                            bucket_groups: Vec::new(),
                            bucket_name: Arc::from(format!("{name}_bucket")),
                            count_name: Arc::from(format!("{name}_count")),
                        });
                        plan.families.len() - 1
                    }
                    idx => idx as usize,
                };
                if let Some(mode) = file.mode {
                    self.s.plan.families[idx].mode = mode;
                }
            }
        }

        // Every sample placed at its first entry (in most files, every sample was placed
        // by an earlier file), and the entries of each accumulator counted. Files that
        // share their entries (see `read::Layout`) and come one after another are counted
        // once, times their number: a file whose samples were all placed by the one
        // before places none.
        let mut run: Option<(&[u32], u32)> = None;
        for (index, file) in files.iter().enumerate() {
            if let Some((samples, count)) = &mut run
                && std::ptr::eq(*samples, file.samples)
            {
                *count += 1;
                continue;
            }
            if let Some((samples, count)) = run.take() {
                self.count_entries(samples, count);
            }
            let mut placed = true;
            for (i, &sample) in file.samples.iter().enumerate() {
                if self.s.plan.ops[sample as usize].at == NONE && self.place(index, file, i, sample)? == NONE {
                    placed = false;
                }
            }
            // A sample left unplaced (a `mostrecent` series never set) may be placed by
            // the next file: it is counted on its own.
            if placed {
                run = Some((file.samples, 1));
            } else {
                self.count_entries(file.samples, 1);
            }
        }
        if let Some((samples, count)) = run {
            self.count_entries(samples, count);
        }

        let plan = &mut self.s.plan;
        let accumulated = plan.slots.len();
        plan.accumulated = accumulated;
        for op in &mut plan.ops {
            if op.at != NONE && op.at & BUCKET != 0 {
                op.at = (accumulated + (op.at & !BUCKET) as usize) as u32;
            }
        }
        plan.weights.clear();
        plan.weights.extend_from_slice(&self.s.slot_weights);
        plan.weights.extend_from_slice(&self.s.bucket_weights);
        for fam in 0..self.s.plan.families.len() {
            if self.s.plan.families[fam].typ == MetricType::Histogram {
                self.plan_histogram(fam);
            }
        }
        let plan = &mut self.s.plan;
        plan.reusable =
            !plan.families.iter().any(|f| f.typ == MetricType::Gauge && Fold::of_gauge(f.mode) == Fold::MostRecent);
        Ok(())
    }

    /// Adds `count` to the weight of the accumulator of each of `samples` (placed).
    fn count_entries(&mut self, samples: &[u32], count: u32) {
        for &sample in samples {
            match self.s.plan.ops[sample as usize].at {
                NONE => {}
                at if at & BUCKET != 0 => self.s.bucket_weights[(at & !BUCKET) as usize] += count,
                at => self.s.slot_weights[at as usize] += count,
            }
        }
    }

    /// Places `sample` (entry `i` of file `index`, its first placed entry): makes its
    /// slot or bucket (and label group) if this is the first entry of its series, and
    /// gives it its op. Returns the accumulator (`NONE` if the sample stays unplaced).
    fn place(&mut self, index: usize, file: &FileInput<'_>, i: usize, sample: u32) -> Result<u32, Unmergeable> {
        let t = self.tables;
        let info = t.sample(sample);
        let fam = self.s.family_of[info.family as usize] as usize;
        let (typ, mode) = (self.s.plan.families[fam].typ, self.s.plan.families[fam].mode);
        let op = match typ {
            // The fold rules shared with compaction (`format::fold`): `all` gauges keep
            // one series per writer (the `pid` label), the other modes fold the series
            // of every writer into one without it.
            MetricType::Gauge => {
                let fold = Fold::of_gauge(mode);
                let target = if fold == Fold::Last { sample } else { info.without_pid };
                // A `mostrecent` series never set takes no slot (nor a label group's
                // place in the output order): it is made at its first entry with a
                // timestamp, and the entries before that change nothing. (A mapped
                // file's timestamp is loaded again when the values are folded; writers
                // only ever stamp a later time, so a series placed here is set then too.)
                if self.s.slot_of[target as usize] == NONE && !fold.is_shown(fold.start(0.0, file.timestamp(i))) {
                    return Ok(NONE);
                }
                let apply = match fold {
                    Fold::Sum => Apply::Add,
                    Fold::Last => Apply::Set,
                    Fold::Min => Apply::Min,
                    Fold::Max => Apply::Max,
                    Fold::MostRecent => Apply::Recent,
                };
                Op { apply, at: self.slot(fam, target) }
            }
            MetricType::Histogram => match &info.le {
                Le::None => Op { apply: Apply::Add, at: self.slot(fam, sample) },
                Le::Bucket { bucket, .. } => Op { apply: Apply::Add, at: BUCKET | self.bucket(fam, *bucket, sample) },
                Le::Invalid => {
                    let le = t.exposed_labels(info.labels).iter().find(|(n, _)| &**n == "le");
                    return Err(Unmergeable {
                        file: index,
                        family: t.name(info.family).to_string(),
                        le: le.map(|(_, v)| v.to_string()).unwrap_or_default(),
                    });
                }
            },
            MetricType::Counter | MetricType::Summary => Op { apply: Apply::Add, at: self.slot(fam, sample) },
        };
        self.s.plan.ops[sample as usize] = op;
        Ok(op.at)
    }

    /// The slot of `sample` in family `fam`, made (and its label group made) if this is
    /// its first assignment.
    fn slot(&mut self, fam: usize, sample: u32) -> u32 {
        match self.s.slot_of[sample as usize] {
            NONE => {
                let labels = self.tables.sample(sample).labels;
                let slot = self.push_slot(fam, labels, SlotKind::Sample(sample));
                self.s.slot_of[sample as usize] = slot;
                self.s.slot_weights.push(0);
                slot
            }
            slot => slot,
        }
    }

    /// Appends a new slot to the label group `labels` of family `fam`, making the group
    /// at the end of the family's groups if needed.
    fn push_slot(&mut self, fam: usize, labels: u32, kind: SlotKind) -> u32 {
        let slot = self.s.plan.slots.len() as u32;
        self.s.plan.slots.push(Slot { kind, next: NONE });
        let group = self.group(fam, labels);
        let plan = &mut self.s.plan;
        let g = &mut plan.groups[group];
        if g.last == NONE {
            g.first = slot;
        } else {
            plan.slots[g.last as usize].next = slot;
        }
        g.last = slot;
        slot
    }

    fn group(&mut self, fam: usize, labels: u32) -> usize {
        let plan = &mut self.s.plan;
        let key = (plan.families[fam].name, labels);
        if let Some(&g) = self.s.group_of.get(&key) {
            return g as usize;
        }
        let g = plan.groups.len() as u32;
        plan.groups.push(Group { first: NONE, last: NONE, next: NONE });
        let family = &mut plan.families[fam];
        if family.last_group == NONE {
            family.first_group = g;
        } else {
            plan.groups[family.last_group as usize].next = g;
        }
        family.last_group = g;
        self.s.group_of.insert(key, g);
        g as usize
    }

    /// The sum of bucket `bucket`, made (recording `sample` as the one whose bound is
    /// printed) on first use.
    fn bucket(&mut self, fam: usize, bucket: u32, sample: u32) -> u32 {
        let found = self.s.bucket_of[bucket as usize];
        if found != NONE {
            return found;
        }
        let idx = self.s.buckets.len() as u32;
        self.s.buckets.push(BucketPlan { sample, next: NONE });
        self.s.bucket_weights.push(0);
        self.s.bucket_of[bucket as usize] = idx;
        let labels = self.tables.bucket(bucket).labels;
        let family = &mut self.s.plan.families[fam];
        match self.s.bucket_group_of.get(&(family.name, labels)) {
            Some(&bg) => {
                let last = family.bucket_groups[bg].2;
                self.s.buckets[last as usize].next = idx;
                family.bucket_groups[bg].2 = idx;
            }
            None => {
                self.s.bucket_group_of.insert((family.name, labels), family.bucket_groups.len());
                family.bucket_groups.push((labels, idx, idx));
            }
        }
        idx
    }

    /// Appends the cumulative buckets and `_count` of every bucket group of a histogram
    /// family to its label groups.
    fn plan_histogram(&mut self, fam: usize) {
        let t = self.tables;
        let family_name = t.name(self.s.plan.families[fam].name);
        let count_id = t.find_name(&format!("{family_name}_count"));
        let bucket_groups = std::mem::take(&mut self.s.plan.families[fam].bucket_groups);
        let accumulated = self.s.plan.accumulated as u32;
        for &(labels, first, _) in &bucket_groups {
            let start = self.s.plan.sorted.len();
            let mut b = first;
            while b != NONE {
                self.s.plan.sorted.push(b);
                b = self.s.buckets[b as usize].next;
            }
            let buckets = &self.s.buckets;
            let bound = |b: &u32| match t.sample(buckets[*b as usize].sample).le {
                Le::Bucket { le, .. } => le,
                _ => unreachable!("bucket sums are made from bucket samples"),
            };
            self.s.plan.sorted[start..].sort_by(|a, b| bound(a).total_cmp(&bound(b)));
            let mut first_slot = NONE;
            for k in start..self.s.plan.sorted.len() {
                let b = self.s.plan.sorted[k];
                let info = t.sample(self.s.buckets[b as usize].sample);
                let Le::Bucket { bucket, le_text, .. } = &info.le else {
                    unreachable!("bucket sums are made from bucket samples")
                };
                let base = t.exposed_labels(t.bucket(*bucket).labels);
                let at = base.partition_point(|(n, _)| &**n < "le");
                // The interned name, shared by every bucket's labels (the renderer
                // escapes a name once per string).
                let le_name = t.exposed_labels(info.labels).iter().find(|(n, _)| &**n == "le").map(|(n, _)| n);
                let le_name = le_name.map_or_else(|| Arc::from("le"), Arc::clone);
                let with_le: Arc<[(Str, Str)]> = base[..at]
                    .iter()
                    .cloned()
                    .chain(std::iter::once((le_name, le_text.clone())))
                    .chain(base[at..].iter().cloned())
                    .collect();
                let index = self.s.plan.bucket_labels.len() as u32;
                self.s.plan.bucket_labels.push(with_le);
                let slot = self.push_slot(fam, labels, SlotKind::Bucket(index));
                if first_slot == NONE {
                    first_slot = slot;
                }
                self.s.plan.sorted[k] = accumulated + b;
            }
            let group = self.group(fam, labels);
            let mut slot = self.s.plan.groups[group].first;
            let mut existing = None;
            while slot != NONE {
                let is_count = match self.s.plan.slots[slot as usize].kind {
                    SlotKind::Sample(id) => Some(t.sample(id).name) == count_id,
                    _ => false,
                };
                if is_count {
                    existing = Some(slot);
                }
                slot = self.s.plan.slots[slot as usize].next;
            }
            let count_slot = existing.unwrap_or_else(|| self.push_slot(fam, labels, SlotKind::Count(labels)));
            let end = self.s.plan.sorted.len() as u32;
            self.s.plan.cumulative.push(Cumulative { start: start as u32, end, first_slot, count_slot });
        }
        self.s.plan.families[fam].bucket_groups = bucket_groups;
    }
}

/// Folds every value of `files` into `acc` (one accumulator per slot made for samples,
/// then one per bucket), on up to `threads` threads, each taking a range of the
/// accumulators of about equal numbers of entries.
fn accumulate(plan: &Plan, files: &[FileInput<'_>], acc: &mut Vec<Acc>, threads: usize) {
    acc.clear();
    acc.resize(plan.weights.len(), Acc::default());
    let threads = threads.clamp(1, acc.len().max(1));
    if threads == 1 {
        accumulate_range(plan, files, acc, 0);
        return;
    }
    let total: u64 = plan.weights.iter().map(|&w| u64::from(w)).sum();
    let mut parts = Vec::with_capacity(threads);
    let mut rest: &mut [Acc] = acc;
    let (mut start, mut sum) = (0, 0u64);
    for (k, &w) in plan.weights.iter().enumerate() {
        sum += u64::from(w);
        // Cut after accumulator `k` once the entries so far reach the next share.
        if sum * threads as u64 >= (parts.len() as u64 + 1) * total && parts.len() + 1 < threads {
            let (part, tail) = std::mem::take(&mut rest).split_at_mut(k + 1 - start);
            parts.push((start, part));
            rest = tail;
            start = k + 1;
        }
    }
    parts.push((start, rest));
    // Skewed weights can leave parts without accumulators: no thread for those.
    parts.retain(|(_, part)| !part.is_empty());
    let threads = parts.len();
    // Each thread takes parts until none is left; a part whose thread could not be
    // started is done by the others, this one included.
    let queue = parking_lot::Mutex::new(parts);
    let work = || {
        loop {
            let next = queue.lock().pop();
            let Some((start, part)) = next else { break };
            accumulate_range(plan, files, part, start);
        }
    };
    std::thread::scope(|scope| {
        for _ in 1..threads {
            let _ = super::threads::spawn_helper(scope, "prometheus-multiproc-merge", work);
        }
        work();
    });
}

/// How many entries ahead the merge asks the CPU for a value it will load from a
/// mapping ([`ReadMap::prefetch`]), so that many loads are under way at once: without
/// it, a warm scrape of 64 x 10,000 took 4.6 ms instead of 3.7 ms.
const AHEAD: usize = 64;

/// How many files ahead the merge asks the CPU for the first value it will load from a
/// mapped file. A directory of small files has a few values in each, on a page of its
/// own, so the prefetch within a file ([`AHEAD`]) never reaches past it, and the first
/// load in each file waited for its page's translation and its line: a warm scrape of
/// 10,000 small files took a median of 2.80 ms instead of 2.31 ms (BENCHMARKS.md,
/// "Ninth round"; in another set, 8 and 32 files ahead took 2.74 and 2.78 ms, 16 took
/// 2.58 ms).
const FILES_AHEAD: usize = 16;

/// Folds the values of `files` that go to accumulators `start..start + acc.len()` into
/// `acc`, in file order, then entry order.
///
/// Only the runs of entries whose accumulators are in range are visited: they are
/// found once for each run of files that share a layout (files with the same entries
/// share one, so 64 workers' files of the same series are looked over once), not once
/// per file, so a thread of a merge split in two reads half of each file's entries
/// rather than all of them.
fn accumulate_range(plan: &Plan, files: &[FileInput<'_>], acc: &mut [Acc], start: usize) {
    let (start, len) = (start as u32, acc.len() as u32);
    // The op of a sample whose accumulator is in range, with its index in `acc`.
    let mine = |sample: u32| {
        let op = plan.ops.get(sample as usize)?;
        let at = op.at.wrapping_sub(start);
        (at < len).then_some((op.apply, at as usize))
    };
    // The runs of entries of the last layout seen, and that layout (its samples).
    let mut runs: Vec<std::ops::Range<usize>> = Vec::new();
    let mut runs_of: Option<&[u32]> = None;
    for (k, file) in files.iter().enumerate() {
        // The first value this thread will load from the file `FILES_AHEAD` on (where
        // that file has the layout of this one's runs; else its first entry's).
        if let Some(later) = files.get(k + FILES_AHEAD)
            && let Values::Mapped { map, offsets } = later.values
        {
            let same_layout = runs_of.is_some_and(|seen| std::ptr::eq(seen, later.samples));
            let first = if same_layout { runs.first().map_or(0, |run| run.start) } else { 0 };
            if let Some(&offset) = offsets.get(first) {
                map.prefetch(offset as usize);
            }
        }
        if !runs_of.is_some_and(|seen| std::ptr::eq(seen, file.samples)) {
            runs.clear();
            let mut at = 0;
            while at < file.samples.len() {
                let Some(first) = file.samples[at..].iter().position(|&s| mine(s).is_some()) else { break };
                let begin = at + first;
                let end = file.samples[begin..]
                    .iter()
                    .position(|&s| mine(s).is_none())
                    .map_or(file.samples.len(), |n| begin + n);
                runs.push(begin..end);
                at = end;
            }
            runs_of = Some(file.samples);
        }
        for run in &runs {
            match file.values {
                Values::Read { values, .. } => {
                    let values = values.get(run.start..run.end.min(values.len())).unwrap_or_default();
                    for (i, (&sample, &value)) in file.samples[run.clone()].iter().zip(values).enumerate() {
                        if let Some((apply, at)) = mine(sample) {
                            acc[at].apply(apply, value, || file.timestamp(run.start + i));
                        }
                    }
                }
                Values::Mapped { map, offsets } => {
                    let offsets = offsets.get(run.start..run.end.min(offsets.len())).unwrap_or_default();
                    for (i, (&sample, &offset)) in file.samples[run.clone()].iter().zip(offsets).enumerate() {
                        if let Some(&ahead) = offsets.get(i + AHEAD) {
                            map.prefetch(ahead as usize);
                        }
                        if let Some((apply, at)) = mine(sample) {
                            // Within the mapping, checked when the entry was parsed: the
                            // fallback is never taken.
                            let value = map.load_u64(offset as usize).map_or(f64::NAN, f64::from_bits);
                            acc[at].apply(apply, value, || file.timestamp(run.start + i));
                        }
                    }
                }
            }
        }
    }
}

/// The output: the plan's families, groups and slots, with values to be filled in by
/// [`fill`]; `order` is set to the slot of each sample, in output order.
fn shape(tables: &Tables, plan: &Plan, order: &mut Vec<u32>) -> Vec<MetricFamily> {
    let t = tables;
    order.clear();
    let mut families = Vec::with_capacity(plan.families.len());
    for family in &plan.families {
        let name = t.name(family.name).clone();
        let first = order.len();
        let mut g = family.first_group;
        while g != NONE {
            let group = plan.groups[g as usize];
            let mut slot = group.first;
            while slot != NONE {
                order.push(slot);
                slot = plan.slots[slot as usize].next;
            }
            g = group.next;
        }
        let samples = order[first..]
            .iter()
            .map(|&slot| {
                let value = 0.0;
                match plan.slots[slot as usize].kind {
                    SlotKind::Sample(id) => {
                        let info = t.sample(id);
                        Sample { name: t.name(info.name).clone(), labels: t.exposed_labels(info.labels).clone(), value }
                    }
                    SlotKind::Bucket(index) => Sample {
                        name: family.bucket_name.clone(),
                        labels: plan.bucket_labels[index as usize].clone(),
                        value,
                    },
                    SlotKind::Count(labels) => {
                        Sample { name: family.count_name.clone(), labels: t.exposed_labels(labels).clone(), value }
                    }
                }
            })
            .collect();
        families.push(MetricFamily { name, help: family.help.clone(), kind: family.typ, samples });
    }
    families
}

/// Sets the value of each sample of `families` (made by [`shape`], which set `order`)
/// from `acc`: its accumulator's, or for a histogram's buckets and count the running
/// sum of its bucket sums in ascending bound (`0.0 + b1 + b2 + …`).
fn fill(plan: &Plan, acc: &[Acc], out: &mut Vec<f64>, order: &[u32], families: &mut [MetricFamily]) {
    out.clear();
    out.extend(acc[..plan.accumulated].iter().map(|a| a.value));
    out.resize(plan.slots.len(), 0.0);
    for c in &plan.cumulative {
        let mut running = 0.0;
        for (k, &b) in plan.sorted[c.start as usize..c.end as usize].iter().enumerate() {
            running += acc[b as usize].value;
            out[c.first_slot as usize + k] = running;
        }
        out[c.count_slot as usize] = running;
    }
    for (sample, &slot) in families.iter_mut().flat_map(|f| &mut f.samples).zip(order) {
        sample.value = out[slot as usize];
    }
}
