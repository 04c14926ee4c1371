"""Speed, memory and quality benchmarks. They print figures; tests never time anything."""
