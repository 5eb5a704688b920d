"""`python -m phaserl ...` (also what torchrun / accelerate launch run)."""

from phaserl.cli import main

if __name__ == "__main__":
    main()
