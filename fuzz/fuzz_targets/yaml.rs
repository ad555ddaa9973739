#![no_main]

// labctl's YAML reader catches what libyaml-safer 0.3 panics on (`panic!("TODO: What is expected
// here?")` for a tag before a comma in a flow collection, as in `[!e,x]`) and returns an error:
// a panic caught there is no crash. libfuzzer-sys's hook aborts on every panic, caught or not,
// so this target puts the default hook back; a panic that escapes labctl still aborts in
// libfuzzer-sys's wrapper and is reported.
libfuzzer_sys::fuzz_target!(
    init: {
        let _ = std::panic::take_hook();
    },
    |data: &[u8]| labctl::fuzz::yaml(data)
);
