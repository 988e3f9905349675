// Placeholder translation unit until cuda/ has sources; remove when it does.
