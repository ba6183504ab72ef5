@echo off
rem ===========================================================================
rem jobhost.cmd: the program of the scheduled task Runner-Migration on new-sbs
rem (installed as C:\mig\bin\jobhost.cmd by the step deploy-job-host).
rem Runs the job named in C:\mig\jobs\current.txt with the arguments stored
rem by job.cmd, and records its output (NAME.log) and exit code (NAME.rc).
rem The exit code file is written last: job.cmd waits for it.
rem ===========================================================================
setlocal
set DIR=C:\mig\jobs
set JOB=
if exist "%DIR%\current.txt" set /p JOB=<"%DIR%\current.txt"
if "%JOB%"=="" exit /b 1
set ARGS=
if exist "%DIR%\%JOB%.args" set /p ARGS=<"%DIR%\%JOB%.args"
cd /d "%DIR%"
> "%DIR%\%JOB%.log" echo %date% %time% job %JOB% started as %USERDOMAIN%\%USERNAME% on %COMPUTERNAME%
call "%DIR%\%JOB%.cmd" %ARGS% >> "%DIR%\%JOB%.log" 2>&1
set RC=%errorlevel%
>> "%DIR%\%JOB%.log" echo %date% %time% job %JOB% ended with exit code %RC%
> "%DIR%\%JOB%.rc" echo %RC%
exit /b %RC%
