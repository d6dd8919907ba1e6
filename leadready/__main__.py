from leadready.cli import main

# Guarded: `leadready score` reads large events tables in a spawned process, which
# imports this module again under another name.
if __name__ == "__main__":
    main()
