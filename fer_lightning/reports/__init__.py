"""What a run leaves for people to read: result files and figures in `results/`, and the summary of
a multirun sweep. Everything here reads finished outputs; nothing trains or evaluates."""
