import sys

from traffic_replay.demo.target import main

sys.exit(main())
