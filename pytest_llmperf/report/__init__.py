"""Reports: terminal table, JSON, JUnit properties (through pytest), progress."""
