//! Independent work split over the cores: planning a large stack parses, checks and projects
//! thousands of objects that do not depend on each other.

/// The cores this process may use (1 when unknown).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// `f` over `items`, results in the order of the items. With at least `min` items and more than
/// one core, the items are cut into one run per core, each mapped on a scoped thread; below that
/// they are mapped here (a thread costs more than a small run saves). A panic in `f` is raised
/// again in the caller.
pub fn map<T: Send, R: Send>(items: Vec<T>, min: usize, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let cores = cores();
    if cores < 2 || items.len() < min.max(2) {
        return items.into_iter().map(f).collect();
    }
    let per = items.len().div_ceil(cores);
    let mut runs = Vec::with_capacity(cores);
    let mut rest = items.into_iter().peekable();
    while rest.peek().is_some() {
        runs.push(rest.by_ref().take(per).collect::<Vec<T>>());
    }
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = runs
            .into_iter()
            .map(|run| scope.spawn(move || run.into_iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_keep_the_items_order_on_either_path() {
        let items: Vec<u32> = (0..1000).collect();
        let want: Vec<u32> = items.iter().map(|i| i * 3).collect();
        assert_eq!(super::map(items.clone(), 1, |i| i * 3), want);
        assert_eq!(super::map(items, usize::MAX, |i| i * 3), want);
        assert!(super::map(Vec::<u32>::new(), 0, |i| i).is_empty());
    }
}
