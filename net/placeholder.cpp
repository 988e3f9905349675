// Placeholder translation unit until net/ has sources; remove when it does.
