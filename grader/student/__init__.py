"""The student's side: `check()` inside a notebook's kernel (selfcheck) and the bundle an
instructor hands out (release: the starter notebook and a wheel with only public checks)."""
